"""Every bad input, from the command line, a config file or the Python API: one line naming the
value and what is allowed, exit status 2 (or the API's exception), and nothing written."""

import math
import socket
import time

import pytest

from search import SearchConfig
from search.cli import main
from search.config import SearchConfigError

FREE_PORT = "{free_port}"
"""Replaced by a port nothing listens on."""

RUN = [  # resnet-search run ...
    (["paper-table9"], "space 'paper-table9' is unknown"),
    (["missing.py:space"], "space file 'missing.py' does not exist"),
    (["paper-table1", "--sampler", "bayes"], "invalid choice: 'bayes'"),
    (["paper-table1", "--scheduler", "hyperband"], "invalid choice: 'hyperband'"),
    (["paper-table1", "--scale", "huge"], "invalid choice: 'huge'"),
    (["paper-table1", "--trials", "0"], "0 is invalid; allowed: an integer >= 1"),
    (["paper-table1", "--seeds", "two"], "'two' is not an integer"),
    (["paper-table1", "--epochs", "0"], "0 is invalid; allowed: an integer >= 1"),
    (["paper-table1", "--concurrency", "0"], "0 is invalid; allowed: an integer >= 1"),
    (["paper-table1", "--grace-period", "0"], "0 is invalid; allowed: an integer >= 1"),
    (["paper-table1", "--reduction-factor", "1"], "reduction_factor=1 is invalid"),
    (["paper-table1", "--max-failures", "-1"], "-1 is invalid; allowed: an integer >= 0"),
    (["paper-table1", "--final-retrain", "-1"], "-1 is invalid; allowed: an integer >= 0"),
    (["paper-table1", "--race", "1"], "race=1 is invalid; allowed: 0 (no race) or an "
                                      "integer >= 2"),
    (["paper-table1", "--race", "3", "--seeds", "3", "--race-seeds", "3"],
     "race_seeds=3 is invalid with seeds=3; allowed: an integer > seeds"),
    (["paper-table2", "--race", "11", "--sampler", "grid"],
     "race=11 is invalid: the grid of space 'paper-table2' has 10 configuration(s); allowed: "
     "2 to 10 finalists"),
    (["paper-table1", "--stop-at-chance", "0"], "0 is invalid; allowed: an integer >= 1"),
    (["paper-table1", "--validate-every", "-1"], "-1 is invalid; allowed: an integer >= 0"),
    (["paper-table1", "--seed", str(2**64)], f"{2**64} is invalid; allowed: an integer in "
                                             "[0, 2**63)"),
    (["paper-table1", "--cpus-per-trial", "-1"], "-1 is invalid; allowed: a number > 0"),
    (["paper-table1", "--cpus-per-trial", "nan"], "nan is invalid; allowed: a number > 0"),
    (["paper-table1", "--gpus-per-trial", "nan"], "nan is invalid; allowed: a number >= 0"),
    (["paper-table1", "--gpus-per-trial", "1.5"], "gpus_per_trial=1.5 is invalid"),
    (["paper-table1", "--wait-for-resources", "0"], "argument --wait-for-resources: 0 is "
                                                    "invalid; allowed: a number > 0"),
    (["paper-table1", "--wait-for-resources", "-5"], "-5 is invalid; allowed: a number > 0"),
    (["paper-table1", "--wait-for-resources", "inf"], "inf is invalid; allowed: a number > 0"),
    (["paper-table1", "--wait-for-resources", "soon"], "'soon' is not a number"),
    (["paper-table1", "--address", "nowhere"], "address='nowhere' is invalid"),
    (["paper-table1", "--address", "ray://head:10001"], "address='ray://head:10001' is not "
                                                        "supported"),
    (["paper-table1", "--address", f"127.0.0.1:{FREE_PORT}"], "is unreachable"),
    (["paper-table1", "--tracking-uri", "ftp://x"], "tracking_uri='ftp://x' is invalid"),
    (["paper-table1", "--optuna-storage", "notaurl"], "optuna_storage='notaurl' is invalid"),
    (["paper-table1", "--optuna-storage", "sqlite:////proc/nope/optuna.db"],
     "--optuna-storage '/proc/nope' is not writable"),
    (["paper-table1", "--optuna-storage", "nodriver://127.0.0.1:1/db"],
     "optuna_storage='nodriver://127.0.0.1:1/db' cannot be used"),
    (["paper-table1", "--tracking-uri", "sqlite:////proc/nope/mlflow.db"],
     "--tracking-uri '/proc/nope' is not writable"),
    (["paper-table1", "--experiment", ""], "experiment='' is invalid"),
    (["paper-table1", "--name", ""], "name='' is invalid"),
    (["paper-table1", "--name", "a/b"], "name='a/b' is invalid"),
    (["paper-table1", "--results-dir", "a-file/results"], "a-file is a file"),
    (["paper-table1", "--storage", "/proc/nope"], "--storage '/proc/nope' is not writable"),
    (["paper-table1", "--cache-dir", "a-file/cache"], "a-file is a file"),
    (["paper-table1", "--dataset", "mnist"], "dataset='mnist' is unknown"),
    (["paper-table1", "--dataset", "imagefolder:nowhere"], "nowhere does not exist"),
    (["paper-table1", "--dataset", "imagefolder:a-file"], "is neither a directory nor a "
                                                          ".tar.gz"),
    (["paper-table1", "--dataset", "cifar10", "--data-dir", "no-such-dir"], "no-such-dir"),
    (["paper-table1", "--device", "tpu"], "device='tpu' is invalid; allowed: auto | cpu"),
    (["paper-table1", "--device", "cuda"], "device='cuda' is unavailable: no CUDA GPU here"),
    (["plain.py:plain", "--sampler", "grid"], "sampler='grid' needs anchors"),
    # Options a simulated trial has no use for, and the simulation's own values.
    (["paper-table1", "--simulate", "--dataset", "cifar10"], "dataset='cifar10' is invalid "
     "with simulate=True; allowed: digits, the default (a simulated trial loads no data)"),
    (["paper-table1", "--simulate", "--dataset", "imagefolder:nowhere"],
     "dataset='imagefolder:nowhere' is invalid with simulate=True"),
    (["paper-table1", "--simulate", "--final-retrain", "2"], "final_retrain=2 is invalid with "
                                                             "simulate=True; allowed: 0"),
    (["paper-table1", "--simulate", "--bf16"], "bf16=True is invalid with simulate=True; "
                                               "allowed: False"),
    (["paper-table1", "--simulate", "--device", "cuda"], "device='cuda' is invalid with "
                                                         "simulate=True; allowed: auto | cpu"),
    (["paper-table1", "--simulate", "--device", "cuda:1"], "device='cuda:1' is invalid with "
                                                           "simulate=True"),
    (["paper-table1", "--simulate", "--simulate-epoch-seconds", "0"],
     "argument --simulate-epoch-seconds: 0 is invalid; allowed: a number > 0"),
    (["paper-table1", "--simulate", "--simulate-epoch-seconds", "-25"],
     "argument --simulate-epoch-seconds: -25 is invalid; allowed: a number > 0"),
    (["paper-table1", "--simulate", "--simulate-speedup", "0.5"],
     "argument --simulate-speedup: 0.5 is invalid; allowed: a number >= 1"),
    (["paper-table1", "--simulate", "--simulate-speedup", "inf"],
     "argument --simulate-speedup: inf is invalid; allowed: a number >= 1"),
]
TRAIN = [  # resnet-search train ...
    (["paper-table1", "--params", '{"shortcut": "highway"}'], "UnitSpec.shortcut='highway'"),
    (["paper-table1", "--params", '{"gate_bias": -6}'], "UnitSpec.gate_bias=-6"),
    (["paper-table1", "--params", "{oops"], "--params is not valid JSON"),
    (["paper-table1", "--params", "[1]"], "--params must be a JSON object"),
    (["paper-table1", "--epochs", "ten"], "'ten' is not an integer"),
    (["paper-table1", "--threads", "0"], "0 is invalid; allowed: an integer >= 1"),
    (["paper-table1", "--seed", str(2**63)], "is invalid; allowed: an integer in [0, 2**63)"),
    (["paper-table1", "--device", "tpu"], "--device 'tpu' is invalid; allowed: auto | cpu"),
    (["paper-table1", "--dataset", "cifar11"], "dataset='cifar11' is unknown; allowed:"),
    (["paper-table1", "--dataset", "cifar10", "--data-dir", "."], "cifar-10-batches-py"),
    (["paper-table1", "--epochs", "0"], "Recipe.epochs=0 is invalid"),
    (["paper-table1", "--out", "a-file"], "--out"),
    (["--config", "unknown-key.json"], "--config key 'learning_rate' is unknown; allowed:"),
    (["--config", "list.yaml"], "must hold a mapping"),
    (["--config", "broken.yaml"], "cannot be parsed"),
    (["--config", "absent.json"], "'absent.json' does not exist"),
    (["--config", "validate.json"], "validate_every=-1 is invalid; allowed: an integer >= 0"),
    ([], "a space is required"),
]
OTHER = [
    (["ui", "--port", "70000"], "70000 is invalid; allowed: an integer in [1, 65536)"),
    (["ui", "--results-dir", "empty"], "holds no MLflow store"),
    (["report", "nope"], "no search 'nope' in"),
    (["sync", "nope"], "search 'nope' is not in"),
    (["list-spaces", "extra"], "unrecognized arguments: extra"),
    (["fly"], "invalid choice: 'fly'"),
]
CASES = [(["run", *a, "--scale", "smoke"], e) for a, e in RUN] + \
        [(["train", *a, "--scale", "smoke"], e) for a, e in TRAIN] + OTHER


@pytest.fixture
def workdir(tmp_path, monkeypatch, free_port):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "empty").mkdir()
    (tmp_path / "unknown-key.json").write_text('{"space": "paper-table1", "learning_rate": 1}')
    (tmp_path / "validate.json").write_text('{"space": "paper-table1", "validate_every": -1}')
    (tmp_path / "list.yaml").write_text("- paper-table1\n")
    (tmp_path / "broken.yaml").write_text("space: [unclosed\n")
    (tmp_path / "plain.py").write_text(
        "from spaces import SearchSpace\n"
        "def define(trial):\n"
        "    trial.suggest_categorical('activation', ['original', 'full_preact'])\n"
        "plain = SearchSpace('plain', define)\n")
    return tmp_path, free_port


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if "__pycache__" not in p.parts)


def test_there_are_at_least_forty_distinct_bad_inputs():
    assert len({tuple(args) for args, _ in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("args, expected", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(workdir, capsys, args, expected):
    root, port = workdir
    args = [a.replace(FREE_PORT, str(port)) for a in args]
    before = _listing(root)
    started = time.time()
    assert main(args) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("resnet-search: error: "), err
    assert expected in lines[0]
    assert out == ""
    assert _listing(root) == before  # no results directory, so no MLflow run or Optuna trial
    assert time.time() - started < 30  # connection targets fail fast too


def test_ui_on_a_busy_port_or_an_unknown_host_is_one_line(workdir, capsys):
    root, _ = workdir
    (root / "results").mkdir()
    (root / "results" / "mlflow.db").touch()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
        assert f"--port {port} on 127.0.0.1 is unavailable" in capsys.readouterr().err
    assert main(["ui", "--host", "no-such-host.invalid"]) == 2
    assert "--host 'no-such-host.invalid' is invalid" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, expected", [
    ({"cpus_per_trial": math.nan}, "cpus_per_trial=nan is invalid"),
    ({"gpus_per_trial": math.inf}, "gpus_per_trial=inf is invalid"),
    ({"seed": -1}, "seed=-1 is invalid"),
    ({"seed": 2**63}, "is invalid; allowed: an integer in [0, 2**63)"),
    ({"trials": 1.5}, "trials=1.5 is invalid"),
    ({"bf16": "yes"}, "bf16='yes' is invalid"),
    ({"device": "tpu"}, "device='tpu' is invalid"),
    ({"name": "my search"}, "name='my search' is invalid"),
    ({"experiment": "  "}, "experiment='  ' is invalid"),
    ({"optuna_storage": "optuna.db"}, "optuna_storage='optuna.db' is invalid"),
    ({"sampler": "bayes"}, "sampler='bayes' is invalid"),
    ({"validate_every": -1}, "validate_every=-1 is invalid; allowed: an integer >= 0"),
    ({"wait_for_resources": 0}, "wait_for_resources=0 is invalid; allowed: a positive number "
                                "of minutes, or None (wait forever)"),
    ({"wait_for_resources": math.nan}, "wait_for_resources=nan is invalid"),
    ({"wait_for_resources": "30"}, "wait_for_resources='30' is invalid"),
    ({"wait_for_resources": True}, "wait_for_resources=True is invalid"),
    ({"simulate": "yes"}, "simulate='yes' is invalid; allowed: True | False"),
    ({"simulate_epoch_seconds": 0.0}, "simulate_epoch_seconds=0.0 is invalid; allowed: a "
                                      "number of seconds > 0"),
    ({"simulate_speedup": 0.99}, "simulate_speedup=0.99 is invalid; allowed: a number >= 1"),
    ({"simulate": True, "dataset": "cifar100"}, "dataset='cifar100' is invalid with "
                                                "simulate=True"),
    ({"simulate": True, "final_retrain": 1}, "final_retrain=1 is invalid with simulate=True"),
    ({"simulate": True, "bf16": True}, "bf16=True is invalid with simulate=True"),
    ({"simulate": True, "device": "cuda:0"}, "device='cuda:0' is invalid with simulate=True"),
])
def test_bad_python_api_values_raise_one_line(kwargs, expected):
    with pytest.raises(SearchConfigError) as raised:
        SearchConfig(**kwargs)
    message = str(raised.value)
    assert expected in message and "\n" not in message
