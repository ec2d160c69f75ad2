"""bench.driver_costs: the sender's requests and CPU per entry before and after merging, the
journal's append and the fsync it no longer waits for, Optuna's commit in both SQLite modes."""

from bench.common import parse_figures
from bench.driver_costs import main


def test_script_prints_both_ways_of_each_cost(capsys):
    assert main(["--quick"]) == 0
    figures = {name: float(value) for name, (value, _) in
               parse_figures(capsys.readouterr().out).items()}
    assert figures["sender.per_entry.entries"] == figures["sender.merged.entries"] == 177
    # One request or more per entry, one at a time; merged, fewer than the entries.
    assert figures["sender.per_entry.requests"] >= figures["sender.per_entry.entries"]
    assert figures["sender.merged.requests"] < figures["sender.merged.entries"]
    for name in ("sender.per_entry.cpu_ms_per_entry", "sender.merged.cpu_ms_per_entry",
                 "journal.append_ms_p50", "journal.fsync_ms_p50",
                 "optuna.rollback_journal.ms_per_commit", "optuna.write_ahead_log.ms_per_commit"):
        assert figures[name] > 0, name
