"""`bench.scale --quick`: 200 simulated trial-seeds on 8 autoscaled simulated GPU nodes, with a
real MLflow server and Optuna study. Asserts what must hold at any speed, never a time: every
trial-seed accounted for, the same in its records, Ray, Optuna and MLflow, every metric point
delivered, and the autoscaler's nodes launched for the search and removed once idle."""

import subprocess
import sys

from bench.common import ROOT, parse_figures


def test_quick_scale_run_accounts_for_every_trial(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.scale", "--quick", "--work",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = {name: value for name, (value, _) in parse_figures(done.stdout).items()}
    assert figures["audit.problems"] == "0", done.stdout
    assert figures["scale.trial_seeds"] == "200"
    # Every trial-seed at its budget or its ASHA stop, none anywhere else.
    assert int(figures["audit.at_budget"]) + int(figures["audit.asha_stopped"]) == 200
    assert figures["mlflow.runs"] == "200"
    assert int(figures["mlflow.metric_points"]) > 0
    assert figures["mlflow.metric_points"] == figures["mlflow.journal_points"]
    # One result per simulated epoch that ran, each taken by the driver's tracker once.
    assert figures["driver.results"] == figures["scale.epochs_run"]
    # Each configuration's whole ask timed too, not only Optuna's `Study.ask` (TPE samples in
    # the space's suggest calls, after it).
    assert float(figures["optuna.configuration_ms_p50"]) > 0
    assert float(figures["tune.wait_s_per_epoch"]) > 0  # read from Tune's records of results
    assert int(figures["scale.nodes_peak"]) >= 8  # the demand (32 GPUs) launched every node
    assert figures["scale.nodes_left_after_idle"] == "0"
    # The wall's phases add up to it: the ramp, the trials' span, the end (the driver's clock
    # against Tune's whole-second timestamps: within 2 s).
    minimum = float(figures["scale.theoretical_min"])
    phases = (float(figures["scale.ramp_s"]) + float(figures["scale.end_s"])
              + float(figures["scale.running_over_min"]) * minimum)
    assert abs(phases - float(figures["scale.wall"])) < 2
    after_ramp = float(figures["scale.after_ramp_over_min"]) * minimum
    assert abs(after_ramp + float(figures["scale.ramp_s"]) - float(figures["scale.wall"])) < 2
    assert 0 < float(figures["scale.slots_held_mean"]) <= 32
    assert float(figures["scale.hold_over_epochs"]) >= 0.9
    # The 8 nodes the demand needs came up after the driver started: they launch for it (the
    # first epochs may start on the first of them, before the last is up).
    assert 0 < float(figures["scale.nodes_ready_s"]) < float(figures["scale.wall"])
    assert float(figures["scale.from_nodes_ready_over_min"]) < float(figures["scale.wall_over_min"])
