"""A throwaway PostgreSQL (Debian's package) on 127.0.0.1, the server database a cluster's
Optuna study lives in, for a benchmark (the MLflow server: `bench.tracking_share`)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A SQLAlchemy URL to a fresh database on a throwaway PostgreSQL server (fsync off: its
    figures are the queries', not the disk's), stopped afterwards. RuntimeError without one."""
    bindir = _pg_bin()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server here (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="rs-pg-"))
    as_owner = []
    if os.geteuid() == 0:  # initdb refuses root: the server runs as an unprivileged user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = pwd.getpwnam("nobody")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", owner.pw_name, "--"]
    port, data = free_port(), root / "data"
    subprocess.run([*as_owner, bindir / "initdb", "-D", data, "-U", "bench", "--auth=trust",
                    "--no-sync", "-E", "UTF8", "--locale=C"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_owner, bindir / "pg_ctl", "-D", data, "-w", "-t", "60", "-l",
                    root / "server.log", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                    "-c max_connections=300", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        subprocess.run([*as_owner, bindir / "createdb", "-h", "127.0.0.1", "-p", str(port),
                        "-U", "bench", "optuna"], check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg2://bench@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_owner, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
