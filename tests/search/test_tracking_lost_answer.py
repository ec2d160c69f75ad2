"""A create_run whose answer is lost makes one run, not two. MLflow's create has no idempotency
key: at full size (bench.scale) the client resent a create that timed out, and the search ended
with an empty RUNNING run beside the trial's own. Here a real `mlflow server` sits behind a
proxy that holds the first create_run: its answer comes after the client's timeout."""

import http.server
import sqlite3
import threading

import pytest
import requests

from search.tracking.journal import Journal
from search.tracking.sender import Sender

CREATE = "/api/2.0/mlflow/runs/create"
TIMEOUT = 5  # seconds the client waits for an answer (MLFLOW_HTTP_REQUEST_TIMEOUT)


class SlowCreate(http.server.ThreadingHTTPServer):
    """Forwards every request to `upstream`, and holds the first create_run until the sender
    has tried again: its answer ("after": the run is made at once) or the request itself
    ("before": it reaches the server after the retry's create), so each case runs the same
    way however slow the machine."""

    def __init__(self, upstream: str, when: str):
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream, self.when, self.creates = upstream, when, 0
        self.asked_again, self.created_again = threading.Event(), threading.Event()
        self.held = threading.Event()  # the first create has been answered
        self.uri = f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        pass  # the answer to a client that gave up: its end is closed


class _Forward(http.server.BaseHTTPRequestHandler):
    def _forward(self) -> None:
        server: SlowCreate = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        create = self.path.startswith(CREATE)
        first = create and server.creates == 0
        server.creates += create
        if server.creates and not first:
            server.asked_again.set()
        if first and server.when == "before":
            server.created_again.wait(60)
        answer = requests.request(self.command, server.upstream + self.path, data=body,
                                  headers={"Content-Type": self.headers.get("Content-Type",
                                                                            "application/json")})
        if first:
            if server.when == "after":
                server.asked_again.wait(60)
            server.held.set()
        elif create:
            server.created_again.set()
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_POST = do_PATCH = do_DELETE = _forward

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_create_run_whose_answer_is_lost_leaves_one_run(tmp_path, mlflow_server, monkeypatch,
                                                          when):
    """"after": the run is made, its answer lost; the retry finds it. "before": the held
    request makes its run after the retry made another; that one is deleted when the run ends."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(TIMEOUT))
    proxy = SlowCreate(mlflow_server.uri, when)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    journal = Journal(tmp_path / "search")
    journal.experiment("lost", str(tmp_path / "artifacts"), {})
    journal.create_run("0000-s0", "trial", {"run_key": "0000-s0"}, find={"run_key": "0000-s0"})
    journal.log("0000-s0", [("val_error", 0.5, 1, 1)])
    try:
        sender = Sender(journal, proxy.uri, progress=False)
        assert not sender.send()  # the create went unanswered
        assert "runs/create" in sender.last_error
        assert sender.send()  # tried again: found ("after") or made anew ("before")
        assert proxy.held.wait(30)  # the held request has reached the server by now
        journal.status("0000-s0", "FINISHED")
        assert sender.send()
    finally:
        proxy.shutdown()
    assert proxy.creates == (1 if when == "after" else 2)  # the client sent none twice
    with sqlite3.connect(mlflow_server.store) as db:
        runs = db.execute("select r.run_uuid, r.status, r.lifecycle_stage, count(m.key) from runs "
                          "r left join metrics m on m.run_uuid = r.run_uuid group by "
                          "r.run_uuid").fetchall()
    active = [run for run in runs if run[2] == "active"]
    assert active == [(sender.run_id("0000-s0"), "FINISHED", "active", 1)]
    assert len(runs) == (1 if when == "after" else 2)  # the stray is deleted, not purged
    assert sender.unanswered == {}
