"""The database user of MLflow and Optuna: created once as the RDS master, owner of its two
databases and nothing else (issue 24, item 6), on a real PostgreSQL.

A throwaway PostgreSQL (Debian's postgresql package; skipped without it) stands in for RDS: a
bootstrap superuser plays AWS, and `rds_master` has what RDS gives its master user (LOGIN,
CREATEDB, CREATEROLE, no SUPERUSER). The head's setup command,
deploy/cluster/postgres_credentials.py, runs against it as cluster.yaml runs it, with Secrets
Manager replaced by a function or module that returns the application user's password; the
operator's side, deploy/cluster/postgres_provision.py, runs it through an `ssh` that executes on
this machine.
"""

from __future__ import annotations

import glob
import importlib.util
import io
import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

psycopg2 = pytest.importorskip("psycopg2")

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "deploy" / "cluster"
MASTER = {"username": "rds_master", "password": "master-pw:'\\x"}
APP = "resnet_search"


def module(name: str):
    spec = importlib.util.spec_from_file_location(name, CLUSTER / f"{name}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


credentials = module("postgres_credentials")
provisioning = module("postgres_provision")


def pg_bin() -> Path | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """host, port and the server's log file of a fresh PostgreSQL, stopped after the module."""
    bindir = pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server here (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="resnet-search-pg-"))
    as_owner = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as an unprivileged user
        owner = pwd.getpwnam("postgres" if _exists("postgres") else "nobody")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", owner.pw_name, "--"]
    (root / "pw").write_text("boot-pw\n")
    os.chmod(root / "pw", 0o644)
    port, data, log = free_port(), root / "data", root / "server.log"
    subprocess.run([*as_owner, bindir / "initdb", "-D", data, "-U", "boot", "--pwfile",
                    root / "pw", "--auth-local=trust", "--auth-host=scram-sha-256",
                    "--no-sync", "-E", "UTF8", "--locale=C"],
                   check=True, capture_output=True, timeout=60)
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
               "-c log_statement=all")  # every statement logged: no password may show
    subprocess.run([*as_owner, bindir / "pg_ctl", "-D", data, "-w", "-t", "30", "-l", log,
                    "-o", options, "start"], check=True, capture_output=True, timeout=60)
    try:
        boot = connect(port, "boot", "boot-pw", "postgres")
        run(boot, "CREATE ROLE rds_master LOGIN CREATEDB CREATEROLE PASSWORD %s",
            (MASTER["password"],))
        run(boot, "CREATE ROLE intruder LOGIN PASSWORD 'intruder-pw'")
        boot.close()
        master = connect(port, "rds_master", MASTER["password"], "postgres")
        run(master, "CREATE DATABASE mlflow")  # what `create-db-instance --db-name` makes
        run(master, "CREATE DATABASE other")  # someone else's data, on the same instance
        master.close()
        other = connect(port, "rds_master", MASTER["password"], "other")
        run(other, "CREATE TABLE private (secret text)")
        other.close()
        yield {"host": "127.0.0.1", "port": port, "log": log}
    finally:
        subprocess.run([*as_owner, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def connect(port: int, user: str, password: str | None, dbname: str):
    conn = psycopg2.connect(host="127.0.0.1", port=port, user=user, password=password,
                            dbname=dbname, sslmode="disable", connect_timeout=10)
    conn.autocommit = True
    return conn


def run(conn, query: str, params=None):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else None


def head_setup(server, user=APP, extra=()) -> list[str]:
    """cluster.yaml's head setup command, pointed at the test server."""
    (command,) = [c for c in yaml.safe_load((REPO / "cluster.yaml").read_text())
                  ["head_setup_commands"] if "postgres_credentials.py" in c]
    argv = shlex.split(command)
    argv = argv[argv.index("--region"):]
    argv[argv.index("--host") + 1] = server["host"]
    argv[argv.index("--user") + 1] = user
    return [*argv, "--port", str(server["port"]), "--sslmode", "disable", *extra]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.pgpass, where libpq reads it
    monkeypatch.delenv("PGPASSFILE", raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    return tmp_path


def test_head_setup_stops_and_names_the_provisioning_step(server, home):
    with pytest.raises(SystemExit) as stopped:
        credentials.main(head_setup(server, user="not_provisioned"),
                         secret=lambda region, secret_id: "app-pw")
    message = str(stopped.value)
    assert "not_provisioned cannot log in" in message
    assert "postgres_provision.py mine/cluster.yaml --admin-secret-id" in message


def test_the_application_user_owns_its_databases_and_nothing_else(server, home):
    asked = []

    def secret(region, secret_id):
        asked.append((region, secret_id))
        return "app-pw-1"

    credentials.main(head_setup(server, extra=["--admin-from-stdin"]), secret=secret,
                     stdin=io.StringIO(json.dumps(MASTER)))
    assert asked == [("us-west-2", "resnet-search/postgres")]
    pgpass = (home / ".pgpass").read_text()
    assert "app-pw-1" in pgpass and MASTER["password"] not in pgpass
    port = server["port"]
    for name in ("mlflow", "optuna"):  # one existed (owned by the master), one is new
        app = connect(port, APP, None, name)  # the password from ~/.pgpass
        run(app, "CREATE TABLE IF NOT EXISTS made (id int)")  # as MLflow's and Optuna's do
        run(app, "DROP TABLE made")
        app.close()
        with pytest.raises(psycopg2.OperationalError, match="permission denied"):
            connect(port, "intruder", "intruder-pw", name)
    app = connect(port, APP, None, "other")  # PUBLIC may connect there, and do nothing
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        run(app, "SELECT * FROM private")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        run(app, "CREATE TABLE mine (x int)")
    for statement in ("CREATE DATABASE more", "CREATE ROLE friend"):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            run(app, statement)
    (flags,) = run(app, "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, "
                        "rolbypassrls FROM pg_roles WHERE rolname = current_user")
    assert flags == (False,) * 5
    assert run(app, "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r "
                    "ON r.oid = m.member WHERE r.rolname = current_user") == [(0,)]
    app.close()
    log = server["log"].read_text(errors="replace")
    assert "CREATE ROLE" in log and "app-pw-1" not in log  # the server saw a SCRAM verifier


def provision(server, password: str) -> None:
    credentials.main(head_setup(server, extra=["--admin-from-stdin"]),
                     secret=lambda region, secret_id: password,
                     stdin=io.StringIO(json.dumps(MASTER)))


def test_provisioning_again_keeps_the_data_and_sets_a_rotated_password(server, home):
    provision(server, "app-pw-1")
    app = connect(server["port"], APP, "app-pw-1", "mlflow")
    run(app, "CREATE TABLE IF NOT EXISTS kept (id int)")
    run(app, "INSERT INTO kept VALUES (1)")
    app.close()
    provision(server, "app-pw-2")
    app = connect(server["port"], APP, "app-pw-2", "mlflow")
    assert run(app, "SELECT * FROM kept") == [(1,)]
    app.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        connect(server["port"], APP, "app-pw-1", "mlflow")
    # Every later `ray up`: no master credentials, the login checked and kept.
    credentials.main(head_setup(server), secret=lambda region, secret_id: "app-pw-2")


def test_the_master_user_is_never_the_application_user(server, home):
    with pytest.raises(SystemExit, match="needs a user of its own"):
        credentials.main(head_setup(server, user="rds_master", extra=["--admin-from-stdin"]),
                         secret=lambda r, s: "x", stdin=io.StringIO(json.dumps(MASTER)))
    with pytest.raises(SystemExit, match="JSON"):
        credentials.main(head_setup(server, extra=["--admin-from-stdin"]),
                         secret=lambda r, s: "x", stdin=io.StringIO("master-pw"))


def test_provisioning_passes_the_master_credentials_on_stdin_only(server, tmp_path):
    """The operator's command, end to end: the master secret read on this side, the head's own
    setup command run through `ssh` with the credentials on its stdin."""
    head = tmp_path / "head"
    fake = tmp_path / "fake"
    for folder in (head, fake):
        folder.mkdir()
    (head / "resnet-search").symlink_to(REPO)
    (fake / "boto3.py").write_text(  # the head's Secrets Manager: the application password
        "import os\nclass _C:\n    def get_secret_value(self, SecretId):\n"
        "        return {'SecretString': os.environ['FAKE_APP_PASSWORD']}\n"
        "def client(service, region_name=None):\n    return _C()\n")
    (head / ".resnet-search.env").write_text(
        f'export PATH="{Path(sys.executable).parent}:$PATH" PYTHONPATH="{fake}" '
        "FAKE_APP_PASSWORD=app-pw-3\n")
    ssh = fake / "ssh"
    ssh.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/ssh.argv"\n'
                   f'for last; do :; done\nexec env -i HOME="{head}" PATH=/usr/bin:/bin '
                   'sh -c "$last"\n')
    ssh.chmod(0o755)
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    setup = " ".join(shlex.quote(a) for a in head_setup(server))
    config["head_setup_commands"] = [
        ". ~/.resnet-search.env && python ~/resnet-search/deploy/cluster/postgres_credentials.py "
        + setup]
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(yaml.safe_dump(config))
    asked = []

    def secret(region, secret_id):
        asked.append((region, secret_id))
        return json.dumps(MASTER)

    status = provisioning.main([str(cluster_file), "--admin-secret-id", "arn:rds!db-1"],
                               secret=secret, ssh=lambda path: [str(ssh), "ubuntu@head"])
    assert status == 0
    assert asked == [("us-west-2", "arn:rds!db-1")]
    argv = (tmp_path / "ssh.argv").read_text()
    assert argv.endswith("--admin-from-stdin'\n") and MASTER["password"] not in argv
    for path in head.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert MASTER["password"] not in path.read_text(errors="replace"), path
    connect(server["port"], APP, "app-pw-3", "optuna").close()


def test_the_head_may_read_the_application_password_only():
    statements = json.loads((REPO / "deploy/iam/head-policy.json").read_text())["Statement"]
    (read,) = [s for s in statements if "secretsmanager:GetSecretValue" in str(s["Action"])]
    arn = "arn:aws:secretsmanager:us-west-2:YOUR_ACCOUNT_ID:secret:"
    assert fnmatch(arn + "resnet-search/postgres-AbC123", read["Resource"])
    for other in ("rds!db-0f1e2d3c-aaaa-bbbb-cccc-0123456789ab-AbC123",  # RDS's master secret
                  "resnet-search/postgres-admin-AbC123", "resnet-search/postgres-master-x1Y2z3"):
        assert not fnmatch(arn + other, read["Resource"]), other
    docs = (REPO / "docs" / "cluster.md").read_text()
    assert "--manage-master-user-password" in docs  # RDS keeps the master secret, under rds!
    master = shlex.split(docs[docs.index("--master-username"):].splitlines()[0])[1]
    assert master != APP
