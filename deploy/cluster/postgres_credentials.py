"""Give the head node its PostgreSQL login and check it (cluster.yaml's head setup command).

MLflow and Optuna log in as an application user (`--user`, resnet_search) that owns its two
databases and nothing else: not a superuser, no CREATEDB or CREATEROLE, a member of no role, and
its databases closed to every other role. Anyone with the Ray token can run code on the head
and so use this login; the RDS master user, which could read or drop everything, never reaches
the head's disk, its instance role or a command line.

Each time `ray up` runs the head's setup, this script reads the application user's password
from AWS Secrets Manager (`--secret-id`, which the head's instance role may read) into ~/.pgpass
(mode 0600), where libpq finds it: the SQLAlchemy URLs of the MLflow server and `resnet-search
run --optuna-storage` carry host, user and database but no secret. It then logs in to each
database, and stops `ray up` with what to do if it cannot.

`--admin-from-stdin` adds the one-time provisioning, which deploy/cluster/postgres_provision.py
runs from your machine over SSH with the RDS master credentials on stdin (JSON {"username": ...,
"password": ...}, as in the secret RDS manages): create or update the application user with the
password from the secret, create each database owned by it, and revoke every other role's access
to them. The master credentials stay in this process's memory for that step: no file, no
environment variable, no argument.

    python postgres_credentials.py --region us-west-2 --secret-id resnet-search/postgres \
        --host HOST --user resnet_search --databases mlflow optuna [--admin-from-stdin]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

# PostgreSQL 15 made the public schema belong to the database's owner, with no CREATE for
# other roles: owning a database is then exactly "all rights in it, none elsewhere".
MIN_SERVER_VERSION = 150000
PROVISION_HINT = (
    "the first time (a new RDS instance, or a new --user or database), create them once from "
    "your machine: python deploy/cluster/postgres_provision.py mine/cluster.yaml "
    "--admin-secret-id ARN_OF_THE_RDS_MASTER_SECRET; then run `ray up` again")


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


def check_name(kind: str, name: str) -> str:
    """Identifiers go into SQL quoted, and only in this checked form."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"{kind} name {name!r}: use lower-case letters, digits and _")
    return name


def provision(connect: Callable[..., object], user: str, password: str,
              databases: Iterable[str], encrypt: Callable[[str, str], str] | None = None
              ) -> list[str]:
    """As the RDS master user (`connect(dbname=...)` opens its DB-API connection): create or
    update the login role `user` with `password`, make it the owner of each database in
    `databases` (created if missing), and close those databases to every other role. Returns the
    databases created. Idempotent; a changed password is set again (rotation).

    `encrypt(password, user)` makes the SCRAM verifier sent instead of the password, so that a
    server that logs statements logs no password (psycopg2's encrypt_password by default)."""
    user = check_name("user", user)
    databases = [check_name("database", name) for name in databases]
    conn = connect(dbname="postgres")
    conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_user, current_setting('server_version_num')::int")
        admin, version = cur.fetchone()
        if version < MIN_SERVER_VERSION:
            raise SystemExit(f"PostgreSQL {version} is older than 15, whose public schema rules "
                             "this setup relies on: use PostgreSQL 15 or newer")
        if admin == user:
            raise SystemExit(f"{user} is the user these credentials log in as (the master "
                             "user?): the application needs a user of its own")
        if encrypt is None:
            from psycopg2.extensions import encrypt_password

            def encrypt(secret: str, role: str) -> str:
                return encrypt_password(secret, role, conn, "scram-sha-256")

        verifier = encrypt(password, user)
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE ROLE "{user}" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
                        "NOREPLICATION NOBYPASSRLS PASSWORD %s", (verifier,))
        else:
            cur.execute(f'ALTER ROLE "{user}" WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD %s',
                        (verifier,))
        check_least_privilege(cur, user)
        # To make `user` a database's owner, the master user must be able to SET ROLE to it
        # (not implied in PostgreSQL 16+ for a role it created). Granted again: a notice only.
        cur.execute(f'GRANT "{user}" TO CURRENT_USER')
        cur.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (databases,))
        existing = {row[0] for row in cur.fetchall()}
        created = []
        for name in databases:
            if name in existing:
                cur.execute(f'ALTER DATABASE "{name}" OWNER TO "{user}"')
            else:
                cur.execute(f'CREATE DATABASE "{name}" OWNER "{user}"')
                created.append(name)
            cur.execute(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
        return created
    finally:
        conn.close()


def check_least_privilege(cur, user: str) -> None:
    """Refuse a role that can do more than own its databases (made by hand, say)."""
    cur.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
                "FROM pg_roles WHERE rolname = %s", (user,))
    flags = dict(zip(["SUPERUSER", "CREATEDB", "CREATEROLE", "REPLICATION", "BYPASSRLS"],
                     cur.fetchone()))
    cur.execute("SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (user,))
    member_of = sorted(row[0] for row in cur.fetchall())
    extra = [name for name, on in flags.items() if on] + [f"member of {r}" for r in member_of]
    if extra:
        raise SystemExit(f"database user {user} has more rights than the application needs "
                         f"({', '.join(extra)}): remove them, or choose another --user")


def check_login(connect: Callable[..., object], databases: Iterable[str]) -> list[str]:
    """Log in to each database (`connect(dbname=...)`, as the application user); returns one
    line per database that refused."""
    failures = []
    for name in databases:
        try:
            conn = connect(dbname=name)
        except Exception as error:  # psycopg2.OperationalError; kept free of the import
            failures.append(f"{name}: {str(error).strip()}")
            continue
        conn.close()
    return failures


def read_admin(stream) -> tuple[str, str]:
    """The master credentials from `stream`: JSON with username and password."""
    try:
        admin = json.loads(stream.read())
        return admin["username"], admin["password"]
    except (ValueError, KeyError, TypeError):
        raise SystemExit("--admin-from-stdin: expected JSON {\"username\": ..., "
                         "\"password\": ...} on stdin (the RDS master secret)") from None


def fetch_secret(region: str, secret_id: str) -> str:
    import boto3

    secrets = boto3.client("secretsmanager", region_name=region)
    return secrets.get_secret_value(SecretId=secret_id)["SecretString"]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--secret-id", required=True,
                        help="a secret whose string is the application user's password")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--user", required=True, help="the application user (not the master)")
    parser.add_argument("--databases", nargs="*", default=[])
    parser.add_argument("--admin-from-stdin", action="store_true",
                        help="provision first, as the master user whose JSON credentials "
                             "arrive on stdin")
    parser.add_argument("--sslmode", default="require", help=argparse.SUPPRESS)  # tests only
    return parser


def main(argv: list[str] | None = None, *, secret: Callable[[str, str], str] = fetch_secret,
         stdin=None) -> None:
    args = parser().parse_args(argv)
    import psycopg2

    password = secret(args.region, args.secret_id)
    write_pgpass(Path.home() / ".pgpass", args.host, args.port, args.user, password)

    if args.admin_from_stdin:
        admin_user, admin_password = read_admin(stdin or sys.stdin)

        def connect_admin(dbname: str):
            return psycopg2.connect(host=args.host, port=args.port, user=admin_user,
                                    password=admin_password, dbname=dbname,
                                    sslmode=args.sslmode)

        created = provision(connect_admin, args.user, password, args.databases)
        del admin_password, connect_admin
        print(f"database user {args.user} owns {', '.join(args.databases) or 'no database'} "
              f"on {args.host}; created: {', '.join(created) or 'none'}")

    def connect(dbname: str):
        # No password argument: libpq reads the file written above. TLS always.
        return psycopg2.connect(host=args.host, port=args.port, user=args.user,
                                dbname=dbname, sslmode=args.sslmode)

    failures = check_login(connect, args.databases)
    if failures:
        raise SystemExit(f"database user {args.user} cannot log in on {args.host}:\n  "
                         + "\n  ".join(failures) + f"\nIf this is {PROVISION_HINT}.")
    print(f"~/.pgpass holds {args.user}@{args.host}, which logs in to "
          f"{', '.join(args.databases) or 'no database'}")


if __name__ == "__main__":
    main()
