"""The report of a real paper-table1 search: files, embedded plots, tau, verdict, no Ray."""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from residual import UnitSpec
from residual.paper import TABLE1

NAME = "t1"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def results(tmp_path_factory, run_search):
    return run_search(tmp_path_factory.mktemp("report-t1") / "results", "paper-table1", NAME)


@pytest.fixture(scope="module")
def done(results, run_report):
    return run_report(NAME, results)


def test_the_report_needs_no_ray_and_writes_both_files(done, results):
    assert not {"torch", "ray", "mlflow"} & set(done["modules"])
    directory = results / "searches" / NAME
    assert done["paths"]["markdown"] == str(directory / "report.md")
    assert done["paths"]["html"] == str(directory / "report.html")
    page = (directory / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    plots = [k for k in done["paths"] if k not in ("markdown", "html")]
    assert {"errors", "curves", "propagation", "axes", "importance"} <= set(plots)
    assert len(images) == len(plots)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    markdown = (directory / "report.md").read_text()
    for key in plots:
        assert done["paths"][key].endswith(".png")
        assert f"report_plots/{key}.png" in markdown
        assert (directory / "report_plots" / f"{key}.png").stat().st_size > 5000
    # The verdict comes first in both.
    assert page.index("Verdict") < page.index("<h2>Ranking</h2>")
    assert markdown.index("## Verdict") < markdown.index("## Ranking")


def _unit_of(results, ranking_row, trials):
    run = trials[trials["configuration_key"] == ranking_row["configuration_key"]].iloc[0]
    plan = results / "searches" / NAME / "trials" / \
        f"{int(run['optuna_trial']):04d}-s{int(run['seed'])}" / "plan.json"
    return UnitSpec.from_dict(json.loads(plan.read_text())["net"]["unit"])


def test_tau_is_scipy_kendall_tau_b_against_table1(done, results):
    directory = results / "searches" / NAME
    ranking = pd.read_csv(directory / "ranking.csv", dtype={"configuration_key": str})
    trials = pd.read_csv(directory / "trials.csv", dtype={"configuration_key": str})
    ours, paper = [], []
    for _, row in ranking.iterrows():
        unit = _unit_of(results, row, trials)
        matches = [p for p in TABLE1 if p.unit == unit]
        assert len(matches) == 1, unit  # the grid measured every row exactly once
        ours.append(row["rank"])
        paper.append(math.inf if matches[0].error is None else matches[0].error)
    paper = [1e6 if math.isinf(p) else p for p in paper]  # "fail": tied last
    expected = stats.kendalltau(ours, paper, variant="b")
    tau, n, concordant, discordant, tied = done["tau"]["Table 1"]
    assert n == len(TABLE1) == 11
    assert tau == pytest.approx(expected.statistic, abs=1e-12)
    assert tied == 6  # the four "fail" rows: C(4, 2) pairs
    assert concordant + discordant + tied == 11 * 10 // 2
    assert (concordant - discordant) / math.sqrt((55 - tied) * 55) == pytest.approx(tau)


def test_the_verdict_names_the_rankings_winner(done, results):
    """The winner set and the shortcut answer by compare.py's rule, recomputed from the
    trials: the ranking's first is the best (2 seeds each), and identity is first among
    shortcuts only when separated from every other shortcut type's best."""
    from search.compare import compare_to_best, winner_set

    directory = results / "searches" / NAME
    ranking = pd.read_csv(directory / "ranking.csv", dtype={"configuration_key": str})
    trials = pd.read_csv(directory / "trials.csv", dtype={"configuration_key": str})
    winner = ranking.loc[ranking["rank"] == 1, "configuration"].item()
    assert done["verdict"][0].startswith("Winner set at the full budget of 3 epochs (not "
                                         "separated from the best, paired t over 2 seeds")
    assert f"): {winner} (" in done["verdict"][0]
    assert winner in done["summary"].splitlines()[1]
    values = {}
    for _, row in ranking.sort_values("rank").iterrows():
        runs = trials[(trials["configuration_key"] == row["configuration_key"])
                      & (trials["outcome"] != "error") & (trials["epochs"] == row["epochs"])]
        values.setdefault(_unit_of(results, row, trials).shortcut,
                          dict(zip(runs["seed"], 100 * runs["val_error"])))
    status = compare_to_best(values).set_index("key")["status"]
    shortcuts = next(line for line in done["verdict"] if "among shortcuts" in line)
    answer = shortcuts.split("?")[1].strip()
    expected = ("Yes" if winner_set(compare_to_best(values)) == ["identity"] else
                "Tied" if status["identity"] in ("best", "tied") else
                "Not resolved (one seed)" if status["identity"] == "unresolved" else "No")
    assert answer.startswith(expected + ":"), shortcuts
    assert "placements? Not searched" in " ".join(done["verdict"])


def test_tables_and_sections(results):
    from search.report import report

    r = report(NAME, results)
    table1 = r.tables["table1"]
    assert len(table1) == 11 and (table1["configuration"] != "").all()
    assert table1.loc[table1["paper"] == "fail", "paper row"].str.contains(
        "lambda=0 s=1|lambda=0.5 s=1|b_g=0|dropout").all()
    ranking = r.tables["ranking"]
    for _, row in table1.iterrows():  # our numbers are the ranking's, in percent
        mine = ranking[ranking["configuration_key"] == row["configuration_key"]].iloc[0]
        assert row["val mean %"] == pytest.approx(100 * mine["val_error_mean"])
        assert row["fail"] == mine["fail"]
    assert "table2" not in r.tables  # one Table 2 row measured: nothing to rank
    # Propagation: constant scaling with lambda = 0 has no direct path, as Eq. 8 says.
    prop = r.tables["propagation"].set_index("configuration")
    assert prop.loc["resnet8-scaling-lam0-s1-original", "measured init"] == 0
    assert prop.loc["resnet8-scaling-lam0.5-s1-original", "predicted init"] == \
        pytest.approx(0.5 ** 3)
    assert prop.loc["resnet8-identity-original", "relative init"] == pytest.approx(1.0)
    # The replay over grace periods, on 3-epoch curves: rungs below the budget only.
    assert r.tables["grace"]["grace period"].tolist() == [1, 2]
    assert r.replay is not None and r.replay.winner == ranking.iloc[0]["configuration"]
    screen = r.tables["screen"]
    assert set(screen["configurations"]) == {11}
    assert ((screen["precision"].between(0, 1)) | screen["precision"].isna()).all()
    importance = r.tables["importance"].set_index("parameter")
    assert importance.loc["shortcut", "scope"] == "all trials"
    assert importance.loc["gate_bias", "scope"] == \
        "shortcut in {exclusive_gate, shortcut_gate}"


def test_the_replay_repeats_the_searchs_own_asha(results, tmp_path):
    from search.report import report

    state = json.loads((results / "searches" / NAME / "search.json").read_text())
    assert state["scheduler"] == {"name": "none", "grace_period": 1, "reduction_factor": 2}
    assert "The default ASHA replayed" in (results / "searches" / NAME / "report.md").read_text()
    copy = tmp_path / "results" / "searches" / "asha"
    shutil.copytree(results / "searches" / NAME, copy)
    state["scheduler"] = {"name": "asha", "grace_period": 2, "reduction_factor": 3}
    (copy / "search.json").write_text(json.dumps(state))
    r = report("asha", tmp_path / "results")
    assert r.replay.grace_period == 2 and r.replay.rungs == (2,)
    assert ("The search's ASHA replayed on the 11 full learning curves (grace period 2, "
            "reduction factor 3") in (copy / "report.md").read_text()


def test_a_user_space_gets_the_report_without_the_paper(results, tmp_path):
    """The same search presented as a user's space, one configuration diverged: no paper
    columns, no tau, and the diverged one is a failure, not a crash."""
    mine = tmp_path / "results"
    shutil.copytree(results / "searches" / NAME, mine / "searches" / "mine")
    directory = mine / "searches" / "mine"
    state = json.loads((directory / "search.json").read_text())
    state["identity"]["space_source"] = "my_spaces.py:my_space"
    (directory / "search.json").write_text(json.dumps(state))
    ranking = pd.read_csv(directory / "ranking.csv", dtype={"configuration_key": str})
    last = ranking.index[-1]
    for column in ranking.columns:
        if column.startswith(("val_error", "test_error", "train_error")):
            ranking.loc[last, column] = float("nan")
    ranking.loc[last, ["full_budget", "fail", "outcomes"]] = [False, "diverged", "diverged x2"]
    ranking.to_csv(directory / "ranking.csv", index=False)

    from search.report import report

    r = report("mine", mine)
    assert r.tau == {} and "table1" not in r.tables
    page = r.html.read_text()
    assert "Against the paper" not in page and "Verdict" in page
    features = r.tables["screen_features"].set_index("configuration")
    assert features.loc[ranking.loc[last, "configuration"], "measured fail"]
    assert r.verdict[0].startswith("Winner set at the full budget of 3 epochs (not separated "
                                   "from the best, paired t over 2 seeds")
    assert f"): {ranking.iloc[0]['configuration']} (" in r.verdict[0]


def test_the_compute_table_sums_every_runs_recorded_epochs(results):
    from search.report import report

    records = pd.concat(pd.read_json(path, lines=True) for path in
                        (results / "searches" / NAME / "trials").glob("*/metrics.jsonl"))
    compute = report(NAME, results).tables["compute"].iloc[0]
    assert compute["seed runs"] == 22  # 11 configurations x 2 seeds
    assert compute["epochs trained"] == len(records) == 22 * 3
    seconds = (records["epoch_seconds"] + records["eval_seconds"]).sum()
    assert compute["trial time s"] == round(seconds) > 0
    assert compute["trial time h"] == round(seconds / 3600, 2)


def test_curves_validated_at_the_end_only_get_no_replay_and_say_why(results, tmp_path):
    """The same search as one run with the default --validate-every 0 and no scheduler: the
    validation error and objective at epoch 3 only. No grace period's rungs were measured, so
    nothing is replayed (an unmeasured epoch would rank every configuration worst)."""
    sparse = tmp_path / "results"
    shutil.copytree(results / "searches" / NAME, sparse / "searches" / "sparse")
    for path in (sparse / "searches" / "sparse" / "trials").glob("*/metrics.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        for m in lines[:-1]:
            for key in ("val_error", "objective"):
                m.pop(key)
        path.write_text("".join(json.dumps(m) + "\n" for m in lines))

    from search.report import report

    r = report("sparse", sparse)
    assert r.replay is None and "grace" not in r.tables
    assert ("No replay of the default ASHA: the search validated its trials at epochs 3 only, "
            "not at its rungs (1, 2)") in r.markdown.read_text()
    assert "curves" in r.paths  # one point per configuration


def test_the_report_command_loads_no_torch_ray_or_mlflow(results):
    """`resnet-search report NAME` after a real search, in a fresh interpreter: it reads what
    the search left (the trial contract's file names and run keys included) without torch."""
    report = results / "searches" / NAME / "report.md"
    written = report.read_text()
    report.unlink()  # the one checked is the command's
    code = ("import sys\n"
            "from search.cli import main\n"
            f"rc = main(['report', {NAME!r}, '--results-dir', {str(results)!r}])\n"
            "print('RC', rc, 'MODULES', ' '.join(sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rc, _, modules = done.stdout.rpartition("RC ")[2].partition(" MODULES ")
    loaded = sorted(m for m in modules.split() if m.split(".")[0] in ("torch", "ray", "mlflow"))
    assert rc == "0" and loaded == [], loaded[:10]
    assert report.read_text() == written  # the same report, written again


def test_report_out_writes_elsewhere_and_leaves_the_records_as_they_are(results, tmp_path):
    """`report NAME --out DIR`: how `make demo` renders the committed rediscovery's report."""
    search = results / "searches" / NAME
    before = {p: p.stat().st_mtime_ns for p in search.rglob("*") if p.is_file()}
    out = tmp_path / "elsewhere"
    done = subprocess.run([sys.executable, "-m", "search.cli", "report", NAME, "--results-dir",
                           str(results), "--out", str(out)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith(f"report: {out / 'report.html'} (and report.md)")
    assert (out / "report.md").read_text() == (search / "report.md").read_text()
    assert any((out / "report_plots").glob("*.png"))
    assert {p: p.stat().st_mtime_ns for p in search.rglob("*") if p.is_file()} == before
