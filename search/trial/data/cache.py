"""The decoded-tensor cache: each source is decoded once per image size, then read back.

Full uint8 tensors live on disk under the cache directory, keyed by the source's identity (which
changes when its files do) and the image size, and in memory for the rest of the process.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch

from .options import DataOptions
from .sources import Source

# Bump when the cached tensor layout changes, so stale .pt files are never read.
_CACHE_VERSION = 1

# Full decoded tensors by cache key: a second load_data in one process costs no I/O.
_MEMO: dict[str, dict] = {}


def clear_memo() -> None:
    """Forget the in-process copies (the on-disk cache stays)."""
    _MEMO.clear()


def load_full(source: Source, options: DataOptions) -> dict:
    """Memo, then the on-disk cache, then decode; the decode result is cached atomically."""
    key_text = repr((_CACHE_VERSION, source.identity, options.image_size))
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    if key in _MEMO:
        return _MEMO[key]
    size = f"{options.image_size}px" if options.image_size else "native"
    path = options.resolved_cache_dir() / "tensors" / f"{source.label}-{size}-{key}.pt"
    if path.exists():
        full = torch.load(path, weights_only=True)
    else:
        full = source.decode(options.image_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Temp file + os.replace: concurrent trials see either no file or a complete one.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(full, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    _MEMO[key] = full
    return full
