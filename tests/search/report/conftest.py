"""A real smoke search per test module, the input of the report (digits, grid over the
paper's anchors, 2 seeds, 3 epochs, no early stopping, validated every epoch for the full
learning curves the replay needs: about a minute on 2 cores)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def smoke_search(results: Path, space: str, name: str) -> Path:
    from search import SearchConfig, run

    run(space, SearchConfig(name=name, scale="smoke", sampler="grid", seeds=2,
                            scheduler="none", epochs=3, validate_every=1,
                            results_dir=str(results),
                            progress=False))
    return results


def report_in_subprocess(name: str, results: Path) -> dict:
    """`report(...)` in a fresh interpreter, as the CLI would call it; what it returns, and
    the modules it loaded."""
    code = (
        "import json, sys\n"
        "from search.report import report\n"
        f"r = report({name!r}, {str(results)!r})\n"
        "print('REPORT', json.dumps({'modules': sorted(sys.modules), 'verdict': r.verdict,\n"
        "    'summary': r.summary, 'paths': {k: str(v) for k, v in r.paths.items()},\n"
        "    'tau': {k: [t.tau, t.n, t.concordant, t.discordant, t.tied]\n"
        "            for k, t in r.tau.items()}}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.rpartition("REPORT ")[2])


@pytest.fixture(scope="session")
def run_search():
    return smoke_search


@pytest.fixture(scope="session")
def run_report():
    return report_in_subprocess
