"""The tracking journal: every MLflow write of a search, appended to a local file first.

The driver never calls MLflow while trials run. It appends what it would have written
(`tracking.jsonl` in the search's directory, one JSON object per line, in order) and a
background `Sender` (`sender.py`) delivers the lines to MLflow. A tracking server that goes
down therefore stops nothing: the journal grows, and it is replayed in order when the server is
back, at the end of the search, or by `resnet-search sync NAME`.

The journal is also the search's own record of its trials: the ranking is read from it
(`replay`), so a search whose server was down throughout still ranks and reports.

Runs are named by a `ref` (the parent's is "parent", a trial's its run key), not by MLflow's
run id, which exists only once the run is created on the server. Every entry replays without
harm: a run is created only if none carries its ref, metrics carry the timestamp they were
journaled with (MLflow keeps one row per identical point), tags and statuses overwrite.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOURNAL = "tracking.jsonl"
STAGED = "tracking-artifacts"
PARENT = "parent"
"""The parent run's ref."""


class Journal:
    """Append-only, line-per-entry; safe to append from one thread and read from another."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / JOURNAL
        self._lock = threading.Lock()
        self._tail_checked = False

    def __getstate__(self) -> dict[str, Any]:  # Ray Tune pickles its callbacks
        return {"directory": self.directory, "path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._tail_checked = False

    def append(self, op: str, **fields: Any) -> None:
        line = json.dumps({"op": op, **fields}) + "\n"
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            if not self._tail_checked:
                self._drop_torn_tail()
                self._tail_checked = True
            # Closed, the entry is the kernel's: a killed driver loses none it has written.
            # Waiting for the disk is `sync`'s, on the sender's thread, not Tune's loop's.
            with self.path.open("a") as file:
                file.write(line)

    def sync(self) -> None:
        """Wait until what was appended is on the disk (the sender does, before each pass):
        a machine lost with the driver then loses at most what was appended since."""
        if self.path.exists():
            with self.path.open("rb") as file:
                os.fsync(file.fileno())

    def _drop_torn_tail(self) -> None:
        """A driver killed inside a write can leave half a line: it was never an entry, and
        the next one must not be glued to it."""
        if not self.path.exists() or not self.path.stat().st_size:
            return
        with self.path.open("rb+") as file:
            file.seek(-1, os.SEEK_END)
            if file.read(1) == b"\n":
                return
            file.seek(0)
            content = file.read()
            file.truncate(content.rfind(b"\n") + 1)

    def entries(self, offset: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """(offset after the entry, entry) from `offset` on; a line still being written (no
        newline yet) is left for the next read."""
        if not self.path.exists():
            return
        with self.path.open("rb") as file:
            file.seek(offset)
            for line in file:
                if not line.endswith(b"\n"):
                    return
                offset += len(line)
                if line.strip():
                    yield offset, json.loads(line)

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def stage(self, source: Path) -> str:
        """Copy a directory of artifacts beside the journal (the trial's own may change before
        the sender gets to it); returns its path relative to the journal's directory."""
        relative = f"{STAGED}/{uuid.uuid4().hex}"
        shutil.copytree(source, self.directory / relative)
        return relative

    # The entries, by what they mean; `Sender._apply` is their other half.
    def experiment(self, name: str, artifact_location: str | None, tags: dict[str, str]) -> None:
        self.append("experiment", name=name, artifact_location=artifact_location, tags=tags)

    def create_run(self, ref: str, run_name: str, tags: dict[str, str],
                   parent: str | None = None, find: dict[str, str] | None = None,
                   optuna: dict[str, Any] | None = None) -> None:
        """`find`: tags that identify the run on the server (a run created before the journal
        was, or by an entry sent twice); `optuna`: where to write the run id back."""
        self.append("create_run", ref=ref, run_name=run_name, tags=tags, parent=parent,
                    find=find or {}, optuna=optuna)

    def log(self, ref: str, metrics: list[tuple[str, float, int, int]] = (),
            params: dict[str, str] | None = None) -> None:
        """metrics: (name, value, timestamp ms, step)."""
        self.append("log", ref=ref, metrics=[list(m) for m in metrics], params=params or {})

    def tags(self, ref: str, tags: dict[str, str]) -> None:
        self.append("tags", ref=ref, tags=tags)

    def status(self, ref: str, status: str) -> None:
        self.append("status", ref=ref, status=status)

    def artifacts(self, ref: str, source: Path, artifact_path: str | None = None,
                  render: bool = False) -> None:
        """`render`: draw the trial's plots from its files there before sending (`Sender`)."""
        self.append("artifacts", ref=ref, dir=self.stage(source), path=artifact_path,
                    render=render)


@dataclass
class JournalRun:
    """A run as the journal describes it: what MLflow holds once the journal is sent."""

    ref: str
    name: str
    parent: str | None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    history: dict[str, dict[int, float]] = field(default_factory=dict)
    """metric -> step -> value."""
    status: str = "RUNNING"

    @property
    def metrics(self) -> dict[str, float]:
        """The latest value of each metric (MLflow's run.data.metrics)."""
        return {key: steps[max(steps)] for key, steps in self.history.items() if steps}


def replay(journal: Journal) -> dict[str, JournalRun]:
    """Every run of the journal, by ref, with everything it was given."""
    runs: dict[str, JournalRun] = {}
    for _, entry in journal.entries():
        op, ref = entry["op"], entry.get("ref")
        if op == "create_run":
            if ref not in runs:
                runs[ref] = JournalRun(ref, entry["run_name"], entry["parent"])
            runs[ref].tags.update(entry["tags"])
            runs[ref].status = "RUNNING"
        elif ref not in runs:
            continue
        elif op == "log":
            run = runs[ref]
            run.params.update(entry["params"])
            for key, value, _, step in entry["metrics"]:
                run.history.setdefault(key, {})[int(step)] = value
        elif op == "tags":
            runs[ref].tags.update(entry["tags"])
        elif op == "status":
            runs[ref].status = entry["status"]
    return runs
