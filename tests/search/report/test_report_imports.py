"""`resnet-search report` after a real search loads neither torch, Ray nor MLflow: the report
reads what the search left, in a fresh interpreter, in seconds."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NAME = "imp"
HEAVY = ("torch", "ray", "mlflow")


def test_the_report_command_loads_no_torch_ray_or_mlflow(tmp_path, cli):
    results = tmp_path / "results"
    searched = cli("run", "paper-table1", "--scale", "smoke", "--epochs", "3", "--trials", "3",
                   "--name", NAME, "--results-dir", results, cwd=ROOT)
    assert searched.returncode == 0, searched.stderr[-3000:]
    report = results / "searches" / NAME / "report.md"
    report.unlink(missing_ok=True)  # the search wrote one: the one checked is the command's
    code = ("import sys\n"
            "from search.cli import main\n"
            f"rc = main(['report', {NAME!r}, '--results-dir', {str(results)!r}])\n"
            "print('RC', rc)\n"
            "print('MODULES', ' '.join(sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "RC 0" in lines, done.stdout[-3000:]
    assert report.is_file()
    modules = next(line for line in lines if line.startswith("MODULES ")).split()[1:]
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not loaded, f"the report path imported {loaded[:10]}"
