"""Recompute docs/RESULTS.md's tables and verdicts from the searches' records and print every
figure or line that does not match.

    .venv/bin/python docs/check_results.py docs/results [--results docs/RESULTS.md]
    .venv/bin/python docs/check_results.py RESULTS_DIR

RECORDS (the first argument) is a results directory, what `resnet-search run --results-dir`
wrote (searches/NAME/ and optuna.db), or a folder of them, one per search, as docs/results/ is:
a search NAME is looked for in RECORDS/searches/NAME, else in RECORDS/*/searches/NAME.

RESULTS.md marks what it copied from a search's report:

    <!-- report: NAME / SECTION TITLE -->
    | ... a table of the report's section SECTION TITLE ... |
    <!-- end -->

    <!-- verdict: NAME -->
    - ... the report's verdict, one line of it per "- " line, verbatim ...
    <!-- end -->

A mark whose search's records were not kept says so, and is then skipped (and named):
`<!-- report: NAME / SECTION (records: gone) -->`, `<!-- verdict: NAME (records: gone) -->`.
A mark without it whose records are not found is missing; a mark with it whose records are
found is an error (drop the declaration, so the mark is checked).

For each search, its records (less checkpoints) are copied to a temporary directory and its
report is written there again (`search.report.report`, no Ray, seconds; nothing is written
beside the records). A marked table is compared with the table of the same header in that
section of report.md, row by row, cell by cell; a marked verdict with the report's verdict,
line by line. Exit status 0 when everything matches, 1 otherwise (each mismatch printed), 2
when a search or section is missing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

MARK = re.compile(r"<!-- (?:report: (?P<name>[\w.-]+) / (?P<section>[^>]+?)"
                  r"|verdict: (?P<verdict>[\w.-]+))(?P<gone> \(records: gone\))? -->\n"
                  r"(?P<body>.*?)<!-- end -->", re.S)


@dataclass
class Tally:
    rows: int = 0
    row_diffs: int = 0
    lines: int = 0
    line_diffs: int = 0
    missing: int = 0
    checked: int = 0
    skipped: int = 0
    stale: int = 0
    """Marks that say `records: gone` where the records are."""

    def summary(self) -> str:
        return (f"{self.rows} rows compared, {self.row_diffs} differ, {self.missing} missing; "
                f"{self.lines} verdict lines compared, {self.line_diffs} differ; "
                f"{self.checked} marks checked, {self.skipped} skipped (records: gone), "
                f"{self.stale} say records: gone where the records are")

    def status(self) -> int:
        return 2 if self.missing else (1 if self.row_diffs + self.line_diffs + self.stale else 0)


def table_rows(markdown: str) -> list[list[str]]:
    """The rows of every Markdown table in `markdown` (separator lines dropped)."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def section_of(report_md: str, title: str) -> str | None:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", report_md, re.S | re.M)
    return match.group(1) if match else None


def find_records(name: str, root: Path) -> Path | None:
    """The results directory holding search `name`: `root` itself, or the one folder of `root`
    that does (None when none or several do)."""
    if (root / "searches" / name).is_dir():
        return root
    found = [path.parents[1] for path in root.glob(f"*/searches/{name}") if path.is_dir()]
    return found[0] if len(found) == 1 else None


def write_again(name: str, records: Path, scratch: Path) -> tuple[str, list[str]]:
    """The report of search `name` written again from a copy of its records under `scratch`
    (its Optuna study from the copy of their optuna.db, if any): its report.md and verdict."""
    from search.report import report

    copy = scratch / name
    shutil.copytree(records / "searches" / name, copy / "searches" / name,
                    ignore=shutil.ignore_patterns("*.pt", "*.pt.tmp", "report.md",
                                                  "report.html", "report_plots"))
    study = None  # search.json names the study's path where the search ran: not this one
    if (records / "optuna.db").is_file():
        shutil.copy2(records / "optuna.db", copy / "optuna.db")
        study = f"sqlite:///{copy / 'optuna.db'}"
    written = report(name, copy, study)
    return written.markdown.read_text(), written.verdict


def compare_table(label: str, table: str, fresh: str, tally: Tally) -> None:
    """A marked table against the table of the same header in `fresh` (a report section)."""
    rows, fresh_rows = table_rows(table), table_rows(fresh)
    start = next((i for i, r in enumerate(fresh_rows) if rows and r == rows[0]), None)
    if start is None:  # the header itself: a table the report no longer has
        print(f"{label}: no table with the header {rows[:1]}")
        tally.row_diffs += 1
        return
    for row, again in zip(rows[1:], fresh_rows[start + 1:] + [[]] * len(rows)):
        tally.rows += 1
        if again != row:
            cells = [f"column {i + 1}: RESULTS.md says {old!r}, the results say {new!r}"
                     for i, (old, new) in enumerate(zip(row, again)) if old != new]
            print(f"{label}, row {row[0]!r}: "
                  + ("; ".join(cells) if cells and len(again) == len(row)
                     else f"the results have {again!r}"))
            tally.row_diffs += 1


def compare_verdict(label: str, block: str, verdict: list[str], tally: Tally) -> None:
    """A marked verdict, one "- line" per line, against the report's verdict, verbatim."""
    lines = [line for line in block.splitlines() if line.strip()]
    for number, (line, again) in enumerate(zip_longest(lines, verdict), 1):
        tally.lines += 1
        if line is None or again is None or line != f"- {again}":
            old = "nothing" if line is None else repr(line.removeprefix("- "))
            new = "nothing" if again is None else repr(again)
            print(f"{label}, line {number}: RESULTS.md says {old}, the report says {new}")
            tally.line_diffs += 1


def check(results_md: Path, root: Path) -> int:
    tally, said = Tally(), set()
    written: dict[str, tuple[str, list[str]] | None] = {}

    def say_once(name: str, message: str) -> None:
        if name not in said:
            print(f"{name}: {message}")
            said.add(name)

    with tempfile.TemporaryDirectory(prefix="check-results-") as scratch:
        for block in MARK.finditer(results_md.read_text()):
            name = block["name"] or block["verdict"]
            records = find_records(name, root)
            if block["gone"]:
                if records is None:
                    say_once(name, "records not committed (its marks say records: gone): "
                                   "skipped")
                    tally.skipped += 1
                else:
                    say_once(name, f"its records are in {records}, but its marks say "
                                   "records: gone; drop that, so they are checked")
                    tally.stale += 1
                continue
            if name not in written:
                written[name] = None
                if records is None:
                    say_once(name, f"no report (searches/{name} is not in {root}, nor in "
                                   "exactly one folder of it)")
                else:
                    try:
                        written[name] = write_again(name, records, Path(scratch))
                    except Exception as error:  # records it cannot read: say which, once
                        say_once(name, f"no report ({type(error).__name__}: {error})")
            if written[name] is None:
                tally.missing += 1
                continue
            report_md, verdict = written[name]
            if block["verdict"]:
                compare_verdict(f"{name} / verdict", block["body"], verdict, tally)
            else:
                section = block["section"].strip()
                fresh = section_of(report_md, section)
                if fresh is None:
                    print(f"{name} / {section}: the report has no such section")
                    tally.missing += 1
                    continue
                compare_table(f"{name} / {section}", block["body"], fresh, tally)
            tally.checked += 1
    print(tally.summary())
    return tally.status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path,
                        help="a results directory, or a folder of them (docs/results)")
    parser.add_argument("--results", type=Path,
                        default=Path(__file__).resolve().parent / "RESULTS.md")
    args = parser.parse_args(argv)
    return check(args.results, args.records)


if __name__ == "__main__":
    sys.exit(main())
