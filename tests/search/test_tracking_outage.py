"""An MLflow server that dies mid-search stops nothing: the search journals its tracking, and
every run reaches the server, each metric point exactly once, when it is back."""

import json
import sqlite3
import subprocess
import time

import pytest

from search.tracking.journal import Journal
from search.tracking.sender import Sender

EPOCHS = 4
ARGS = ["run", "paper-table1", "--scale", "smoke", "--trials", 2, "--concurrency", 2,
        "--epochs", EPOCHS, "--scheduler", "none", "--name", "outage"]


def _wait_for_first_epoch(search_dir, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(p.stat().st_size for p in search_dir.glob("trials/*/metrics.jsonl")):
            return
        time.sleep(0.1)
    raise AssertionError("no trial finished an epoch")


def _assert_every_point_once(store, runs=3):
    """Counted in the server's own store: every run FINISHED, each (run, metric, step) once,
    and each trial's epochs 1..EPOCHS."""
    with sqlite3.connect(store) as db:
        statuses = [s for (s,) in db.execute("select status from runs")]
        repeated = db.execute("select run_uuid, key, step, count(*) from metrics group by "
                              "run_uuid, key, step having count(*) > 1").fetchall()
        epochs = db.execute("select run_uuid, group_concat(step) from (select run_uuid, step "
                            "from metrics where key = 'epoch' order by step) group by "
                            "run_uuid").fetchall()
    assert statuses == ["FINISHED"] * runs
    assert repeated == []
    assert sorted(steps for _, steps in epochs) == [",".join(
        str(e) for e in range(1, EPOCHS + 1))] * (runs - 1)


@pytest.mark.parametrize("back", ["after the search", "mid-search"])
def test_server_killed_after_the_first_epoch(tmp_path, mlflow_server, cli, back):
    search_dir = tmp_path / "results" / "searches" / "outage"
    driver = cli(*ARGS, "--tracking-uri", mlflow_server.uri, cwd=tmp_path,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_first_epoch(search_dir)
    mlflow_server.kill()
    if back == "mid-search":
        time.sleep(3)
        mlflow_server.start()
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert (search_dir / "ranking.csv").exists() and (search_dir / "report.html").exists()

    if back == "after the search":
        assert "is unreachable" in err
        assert "resnet-search sync outage" in out  # says how to send the rest
        ranking = (search_dir / "ranking.md").read_text()
        assert "ok" in ranking  # ranked from the journal, not from the server
        mlflow_server.start()
        synced = cli("sync", "outage", cwd=tmp_path)
        assert synced.returncode == 0, synced.stderr
        assert "sent" in synced.stdout
        again = cli("sync", "outage", cwd=tmp_path)
        assert "already has everything" in again.stdout
    _assert_every_point_once(mlflow_server.store)


def test_sync_while_the_server_is_down_is_one_line_and_keeps_the_journal(tmp_path, cli,
                                                                          mlflow_server):
    mlflow_server.kill()
    done = cli(*ARGS, "--tracking-uri", mlflow_server.uri, "--epochs", 1, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    journal = tmp_path / "results" / "searches" / "outage" / "tracking.jsonl"
    size = journal.stat().st_size
    synced = cli("sync", "outage", cwd=tmp_path)
    assert synced.returncode == 2
    assert len(synced.stderr.strip().splitlines()) == 1 and "unreachable" in synced.stderr
    assert journal.stat().st_size == size
    unknown = cli("sync", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "search 'nope' is not in" in unknown.stderr


def test_an_entry_sent_twice_is_stored_once(tmp_path):
    """A driver killed between sending an entry and noting it re-sends it: no harm done."""
    journal = Journal(tmp_path / "search")
    journal.experiment("twice", None, {})
    parent = {"search": "s", "parent": "true"}
    journal.create_run("parent", "p", parent, find=parent)
    journal.create_run("0000-s0", "c", {"search": "s", "run_key": "0000-s0"}, parent="parent",
                       find={"search": "s", "run_key": "0000-s0"})
    journal.log("0000-s0", [("val/error", 0.5, 1000, 1), ("val/error", 0.4, 2000, 2)],
                {"lr": "0.1"})
    journal.status("0000-s0", "FINISHED")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    first = Sender(journal, uri, progress=False)
    assert first.send()
    state = tmp_path / "search" / "tracking.sent.json"
    state.write_text(json.dumps({"offset": 0}))  # as if the notes were lost
    assert Sender(journal, uri, progress=False).send()
    with sqlite3.connect(tmp_path / "m.db") as db:
        assert db.execute("select count(*) from runs").fetchone() == (2,)
        assert db.execute("select count(*) from metrics").fetchone() == (2,)
        assert db.execute("select count(*) from params").fetchone() == (1,)


def test_half_a_line_left_by_a_killed_driver_is_not_an_entry(tmp_path):
    journal = Journal(tmp_path)
    journal.tags("parent", {"a": "1"})
    with journal.path.open("a") as file:
        file.write('{"op": "tags", "ref": "par')  # killed mid-write
    assert [e["tags"] for _, e in Journal(tmp_path).entries()] == [{"a": "1"}]
    again = Journal(tmp_path)  # the next driver
    again.tags("parent", {"b": "2"})
    assert [e["tags"] for _, e in again.entries()] == [{"a": "1"}, {"b": "2"}]
