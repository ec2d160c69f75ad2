"""Give the head node its PostgreSQL password and the search's databases (cluster.yaml).

The password lives in AWS Secrets Manager, readable by the head's instance role only. This
script, run as a head setup command, writes it into ~/.pgpass (mode 0600), where libpq finds
it: the SQLAlchemy URLs that the MLflow server and `resnet-search run --optuna-storage` use then
carry host, user and database but no secret, so no command line, job entrypoint, log or
cluster config ever shows it. It then creates the databases that do not exist yet.

    python postgres_credentials.py --region us-west-2 --secret-id resnet-search/postgres \
        --host HOST --user resnet_search --databases mlflow optuna
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path


def _escape(field: str) -> str:
    """~/.pgpass fields escape backslash and colon with a backslash."""
    return field.replace("\\", "\\\\").replace(":", "\\:")


def pgpass_line(host: str, port: int, user: str, password: str) -> str:
    """The ~/.pgpass entry for every database on `host:port` as `user`."""
    return f"{_escape(host)}:{port}:*:{_escape(user)}:{_escape(password)}\n"


def write_pgpass(path: Path, host: str, port: int, user: str, password: str) -> None:
    """Put the entry for host/port/user into `path`, keeping other entries; mode 0600 (libpq
    ignores a ~/.pgpass that others can read)."""
    prefix = pgpass_line(host, port, user, "").rsplit(":", 1)[0] + ":"
    kept = []
    if path.exists():
        kept = [line for line in path.read_text().splitlines(keepends=True)
                if not line.startswith(prefix)]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.writelines(kept + [pgpass_line(host, port, user, password)])
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def create_databases(connect: Callable[..., object], names: Iterable[str]) -> list[str]:
    """Create each database in `names` that does not exist; returns those created.
    `connect(dbname=...)` opens a DB-API connection (psycopg2.connect with host and user)."""
    names = list(names)
    for name in names:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
    conn = connect(dbname="postgres")
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        cur = conn.cursor()
        cur.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,))
        existing = {row[0] for row in cur.fetchall()}
        missing = [name for name in names if name not in existing]
        for name in missing:
            cur.execute(f'CREATE DATABASE "{name}"')  # a checked identifier, see above
        return missing
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--secret-id", required=True, help="a secret whose string is the password")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--user", required=True)
    parser.add_argument("--databases", nargs="*", default=[])
    args = parser.parse_args(argv)

    import boto3
    import psycopg2

    secrets = boto3.client("secretsmanager", region_name=args.region)
    password = secrets.get_secret_value(SecretId=args.secret_id)["SecretString"]
    write_pgpass(Path.home() / ".pgpass", args.host, args.port, args.user, password)

    def connect(dbname: str):
        # No password argument: libpq reads the file written above. TLS always.
        return psycopg2.connect(host=args.host, port=args.port, user=args.user,
                                dbname=dbname, sslmode="require")

    created = create_databases(connect, args.databases)
    print(f"~/.pgpass holds {args.user}@{args.host}; created databases: {created or 'none'}")


if __name__ == "__main__":
    main()
