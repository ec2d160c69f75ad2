"""docs/check_results.py: RESULTS.md against the records committed under docs/results/, and a
verdict copied from the committed rediscovery's report, verbatim or changed."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "check_results.py"
DOCS_RESULTS = ROOT / "docs" / "results"
NAME = "rediscover-small"


@pytest.fixture(scope="module")
def checker():
    """docs/check_results.py as a module (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("docs_check_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def files_under(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


def test_results_md_against_the_committed_records(checker):
    """Every mark is checked against its committed records, or says `records: gone` and is
    skipped by name; the check writes nothing beside the records."""
    marks = list(checker.MARK.finditer((ROOT / "docs" / "RESULTS.md").read_text()))
    assert marks, "RESULTS.md has no marks: the check would pass on nothing"
    names = {mark["name"] or mark["verdict"] for mark in marks}
    committed = {name for name in names if checker.find_records(name, DOCS_RESULTS)}
    before = files_under(DOCS_RESULTS)
    done = subprocess.run([sys.executable, str(SCRIPT), "docs/results"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    checked, skipped = map(int, re.search(r"(\d+) marks checked, (\d+) skipped",
                                          done.stdout).groups())
    assert checked >= len(committed)
    assert checked == sum((mark["name"] or mark["verdict"]) in committed for mark in marks)
    assert checked + skipped == len(marks)
    for name in names - committed:
        assert f"{name}: records not committed" in done.stdout
    assert files_under(DOCS_RESULTS) == before
    # Records, not checkpoints: small enough to commit.
    records = [path for path in before if "searches" in path.relative_to(DOCS_RESULTS).parts
               or path.name == "optuna.db"]
    assert not [path for path in before if path.suffix == ".pt"]
    assert sum(path.stat().st_size for path in records) < 20 * 2 ** 20


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A folder holding one results directory, a copy of the committed rediscovery's records
    (docs/results/<search>/): the check is tried on real records without running a search."""
    import shutil

    folder = tmp_path_factory.mktemp("records")
    shutil.copytree(DOCS_RESULTS / NAME, folder / "mine")
    return folder


def run_check(checker, capsys, records: Path, page: Path) -> tuple[int, str]:
    status = checker.main([str(records), "--results", str(page)])
    return status, capsys.readouterr().out


def test_a_verdict_copied_verbatim_passes_and_a_changed_line_is_named(checker, records,
                                                                       capsys, tmp_path):
    from search.report import report

    verdict = report(NAME, records / "mine").verdict
    before = files_under(records)
    copied = "\n".join(f"- {line}" for line in verdict)
    page = tmp_path / "RESULTS.md"
    page.write_text(f"Text.\n\n<!-- verdict: {NAME} -->\n{copied}\n<!-- end -->\n")
    for where in (records, records / "mine"):  # a folder of results directories, or one
        status, out = run_check(checker, capsys, where, page)
        assert status == 0, out
        assert f"{len(verdict)} verdict lines compared, 0 differ" in out
        assert "1 marks checked" in out
    changed = verdict[0].replace("Winner", "The winner", 1)
    page.write_text(page.read_text().replace(f"- {verdict[0]}\n", f"- {changed}\n"))
    status, out = run_check(checker, capsys, records, page)
    assert status == 1, out
    assert (f"{NAME} / verdict, line 1: RESULTS.md says {changed!r}, the report says "
            f"{verdict[0]!r}") in out
    page.write_text(page.read_text().replace(f"- {verdict[-1]}\n", ""))  # a line left out
    status, out = run_check(checker, capsys, records, page)
    assert status == 1, out
    assert f"line {len(verdict)}: RESULTS.md says nothing, the report says" in out
    assert files_under(records) == before  # reported again in a copy, not beside the records


def test_records_gone_is_a_declaration_checked_both_ways(checker, records, capsys, tmp_path):
    page = tmp_path / "RESULTS.md"
    page.write_text("<!-- verdict: lost (records: gone) -->\n- a line\n<!-- end -->\n"
                    "<!-- report: lost / Compute (records: gone) -->\n| a |\n<!-- end -->\n")
    status, out = run_check(checker, capsys, records, page)
    assert status == 0, out
    assert out.count("lost: records not committed") == 1 and "2 skipped" in out
    # Without the declaration, records that are not there are missing.
    page.write_text(page.read_text().replace(" (records: gone)", ""))
    status, out = run_check(checker, capsys, records, page)
    assert status == 2, out
    assert "lost: no report" in out and "2 missing" in out
    # With it, records that are there are an error: the mark would never be checked.
    page.write_text(f"<!-- verdict: {NAME} (records: gone) -->\n- a line\n<!-- end -->\n")
    status, out = run_check(checker, capsys, records, page)
    assert status == 1, out
    assert "but its marks say records: gone" in out and "1 say records: gone" in out


def test_make_demo_ends_with_the_committed_rediscovery_report(tmp_path):
    """`make demo`'s last command renders the committed rediscovery's report offline: its
    verdict on the terminal and the path of its HTML, nothing written beside the records."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")
    line = next(line for line in recipe.splitlines() if "resnet-search report" in line)
    args = line.split("resnet-search", 1)[1].split()
    assert args[:2] == ["report", NAME] and "docs/results/" + NAME in args
    args[args.index("--out") + 1] = str(tmp_path / "out")
    before = files_under(DOCS_RESULTS)
    done = subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "- Winner set at the full budget" in done.stdout
    assert done.stdout.strip().endswith(f"report: {tmp_path / 'out' / 'report.html'} "
                                        "(and report.md)")
    assert files_under(DOCS_RESULTS) == before
