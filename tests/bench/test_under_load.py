"""bench.under_load runs a test again and again beside busy loops, and says how each ended."""

import subprocess
import sys

from bench.common import ROOT, parse_figures

QUICK_TEST = ["tests/test_architecture.py", "-k", "too_long"]


def run(*args: str, tmp_path) -> tuple[int, dict[str, str]]:
    done = subprocess.run([sys.executable, "-m", "bench.under_load", *args, "--keep",
                           str(tmp_path / "kept")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    return done.returncode, {k: v for k, (v, _) in parse_figures(done.stdout).items()}


def test_every_run_passing_and_the_matches_counted(tmp_path):
    code, figures = run(*QUICK_TEST, "--runs", "2", "--hogs", "1", "--count", r"\d+ passed",
                        tmp_path=tmp_path)
    assert code == 0
    assert (figures["under_load.runs"], figures["under_load.passed"],
            figures["under_load.matched"]) == ("2", "2", "2")
    assert not list((tmp_path / "kept").iterdir())  # nothing kept of a passed run


def test_a_failing_run_is_counted_and_its_output_kept(tmp_path):
    code, figures = run("tests/test_architecture.py", "-k", "no_such_test", "--runs", "1",
                        "--hogs", "0", tmp_path=tmp_path)
    assert code == 1
    assert (figures["under_load.passed"], figures["under_load.failed"]) == ("0", "1")
    assert "deselected" in (tmp_path / "kept" / "run1" / "pytest.log").read_text()
