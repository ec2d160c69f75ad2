"""`resnet-search train` as a user runs it: progress lines, resume after SIGKILL, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

BIN = [sys.executable, "-m", "search.cli"]


def _run(*args, cwd, timeout=120):
    return subprocess.run([*BIN, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_train_prints_one_line_per_epoch_and_writes_outputs(tmp_path):
    done = _run("train", "paper-table1", "--scale", "smoke", "--epochs", "2", "--params",
                '{"shortcut": "shortcut_gate", "gate_bias": -6}', "--seed", "3",
                "--out", "run", "--threads", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("resnet8-shortcut_gate-bg-6-original (seed 3, 2 epochs")
    assert sum(line.startswith("epoch ") for line in lines) == 2
    assert "outcome ok" in done.stdout or "outcome diverged" in done.stdout
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["net"]["unit"]["gate_bias"] == -6.0 and plan["seed"] == 3
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_config_file_and_default_output_directory(tmp_path):
    (tmp_path / "trial.yaml").write_text("space: paper-table2\nscale: smoke\nepochs: 1\n"
                                         "params: {activation: full_preact, bottleneck: true}\n")
    done = _run("train", "--config", "trial.yaml", "--threads", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "results" / "train" / "paper-table2" / \
        "resnet11-bottleneck-identity-full_preact-seed0"
    assert (out / "result.json").exists()


def test_sigkilled_trial_resumes_at_the_next_epoch_with_the_same_weights(tmp_path):
    args = ["train", "paper-table1", "--scale", "small", "--epochs", "4", "--threads", "1",
            "--params", '{"shortcut": "identity", "depth": 8}']
    straight = _run(*args, "--out", "straight", cwd=tmp_path, timeout=300)
    assert straight.returncode == 0, straight.stderr

    process = subprocess.Popen([*BIN, *args, "--out", "killed"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the trial finished before it was killed"
    # Epoch 2's records are written before its checkpoint: the kill may land between them.
    checkpointed = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= checkpointed < 4

    resumed = _run(*args, "--out", "killed", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    epochs = [line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("epoch")]
    assert epochs[0] == f"{checkpointed + 1}/4" and epochs[-1] == "4/4"
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


