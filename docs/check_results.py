"""Recompute docs/RESULTS.md's tables from a results directory and print every figure that
does not match.

    .venv/bin/python docs/check_results.py RESULTS_DIR [--results docs/RESULTS.md]

RESULTS.md marks each table it copied from a search's report:

    <!-- report: SEARCH_NAME / SECTION TITLE -->
    | ... the table ... |
    <!-- end -->

For each, the search's report is written again from RESULTS_DIR (`search.report.report`, no
Ray, seconds), the tables of that section of its report.md are read back, and the marked table
is compared with the table of the same header there, row by row, cell by cell. Exit status 0
when every figure matches, 1 otherwise (each mismatch printed), 2 when a search or section is
missing.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

MARK = re.compile(r"<!-- report: (?P<name>[\w.-]+) / (?P<section>[^>]+?) -->\n(?P<table>.*?)"
                  r"<!-- end -->", re.S)


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


def check(results_md: Path, results_dir: Path) -> int:
    from search.report import report

    written: dict[str, str | None] = {}
    mismatches, missing, compared = 0, 0, 0
    for block in MARK.finditer(results_md.read_text()):
        name, section = block["name"], block["section"].strip()
        if name not in written:
            try:
                directory = report(name, results_dir).directory
                written[name] = (directory / "report.md").read_text()
            except Exception as error:  # a search that is not there: say which, once
                print(f"{name}: no report ({type(error).__name__}: {error})")
                written[name] = None
        if written[name] is None:
            missing += 1
            continue
        fresh = section_of(written[name], section)
        if fresh is None:
            print(f"{name} / {section}: the report has no such section")
            missing += 1
            continue
        rows = table_rows(block["table"])
        fresh_rows = table_rows(fresh)
        start = next((i for i, r in enumerate(fresh_rows) if rows and r == rows[0]), None)
        if start is None:  # the header itself: a table the report no longer has
            print(f"{name} / {section}: no table with the header {rows[:1]}")
            mismatches += 1
            continue
        for row, again in zip(rows[1:], fresh_rows[start + 1:] + [[]] * len(rows)):
            compared += 1
            if again != row:
                cells = [f"column {i + 1}: RESULTS.md says {old!r}, the results say {new!r}"
                         for i, (old, new) in enumerate(zip(row, again)) if old != new]
                print(f"{name} / {section}, row {row[0]!r}: "
                      + ("; ".join(cells) if cells and len(again) == len(row)
                         else f"the results have {again!r}"))
                mismatches += 1
    print(f"{compared} rows compared, {mismatches} differ, {missing} missing")
    return 2 if missing else (1 if mismatches else 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--results", type=Path,
                        default=Path(__file__).resolve().parent / "RESULTS.md")
    args = parser.parse_args(argv)
    return check(args.results, args.results_dir)


if __name__ == "__main__":
    sys.exit(main())
