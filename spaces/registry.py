"""Finding a space: a registered name, `path/to/file.py:name` or `package.module:name`.

A user's space lives in their own file; the attribute it names is a `SearchSpace`, or a
function of a `Scale` returning one (as the built-ins are), so it can size itself per scale.
This module holds the registry; `spaces.builtin` registers the paper's spaces into it, and
`import spaces` imports both (the arrow points one way: builtin -> registry).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .scales import Scale, get_scale
from .space import SearchSpace, SpaceError

SpaceFactory = Callable[[Scale], SearchSpace]


@dataclass(frozen=True)
class RegisteredSpace:
    name: str
    description: str
    factory: SpaceFactory


BUILTIN_SPACES: dict[str, RegisteredSpace] = {}


def register_space(name: str, description: str) -> Callable[[SpaceFactory], SpaceFactory]:
    """Register a space factory under a name that `resnet-search run NAME` accepts."""

    def decorate(factory: SpaceFactory) -> SpaceFactory:
        BUILTIN_SPACES[name] = RegisteredSpace(name, description, factory)
        return factory

    return decorate


def list_spaces() -> list[RegisteredSpace]:
    """Every registered space (the paper's Tables 1-2 and their joint space, and any other
    registered), by name."""
    return sorted(BUILTIN_SPACES.values(), key=lambda s: s.name)


def load_space(ref: str | SearchSpace, scale: str | Scale = "small") -> SearchSpace:
    """The space `ref` names, sized for `scale`, with `source` recording where it came from."""
    scale = get_scale(scale)
    if isinstance(ref, SearchSpace):
        return ref
    names = {s.name: s for s in list_spaces()}
    if ref in names:
        space = names[ref].factory(scale)
        space.source = ref
        return space
    if ":" not in ref:
        raise SpaceError(f"space {ref!r} is unknown; allowed: {' | '.join(names)} | "
                         "path/to/file.py:name | package.module:name")
    where, _, attr = ref.rpartition(":")
    module = _import_file(where) if where.endswith(".py") else _import_module(where)
    if not hasattr(module, attr):
        raise SpaceError(f"space {ref!r}: {where} has no attribute {attr!r}")
    space = getattr(module, attr)
    if not isinstance(space, SearchSpace) and callable(space):
        try:
            space = space(scale)
        except Exception as error:
            raise SpaceError(f"space {ref!r}: calling it with the scale raised "
                             f"{type(error).__name__}: {error}") from None
    if not isinstance(space, SearchSpace):
        raise SpaceError(f"space {ref!r} is a {type(space).__name__}; allowed: a SearchSpace "
                         "or a function of a Scale returning one")
    # A file by its absolute path: trials load it again in workers that run elsewhere (Ray
    # starts them in their own directories), and a resumed search compares it.
    space.source = f"{Path(where).expanduser().resolve()}:{attr}" if where.endswith(".py") \
        else ref
    return space


def _import_file(path: str):
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise SpaceError(f"space file {path!r} does not exist")
    # A name unique to the file, so two users' `spaces.py` never shadow each other.
    name = f"resnet_search_user_{hashlib.sha1(str(file).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise SpaceError(f"space file {path!r} failed to import: "
                         f"{type(error).__name__}: {error}") from None
    return module


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except Exception as error:
        raise SpaceError(f"space module {name!r} failed to import: "
                         f"{type(error).__name__}: {error}") from None
