"""The report as Markdown (images beside it) and as one self-contained HTML file (images
embedded as base64 PNG data URIs, plain CSS inline)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Block:
    kind: str
    """"text", "list", "table" or "image"."""
    content: object
    caption: str = ""


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def text(self, text: str) -> Section:
        self.blocks.append(Block("text", text))
        return self

    def items(self, items: list[str]) -> Section:
        self.blocks.append(Block("list", items))
        return self

    def table(self, frame: pd.DataFrame, caption: str = "") -> Section:
        if frame is not None and not frame.empty:
            self.blocks.append(Block("table", frame, caption))
        return self

    def image(self, path: Path | None, caption: str = "") -> Section:
        if path is not None:
            self.blocks.append(Block("image", Path(path), caption))
        return self


@dataclass
class Document:
    title: str
    subtitle: str
    verdict: list[str]
    sections: list[Section]


def _md_cell(value: object) -> str:
    return str(value).replace("|", "/").replace("\n", " ")


def to_markdown(doc: Document, relative_to: Path) -> str:
    lines = [f"# {doc.title}", "", doc.subtitle, "", "## Verdict", ""]
    lines += [f"- {line}" for line in doc.verdict] + [""]
    for section in doc.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if block.kind == "text":
                lines += [str(block.content), ""]
            elif block.kind == "list":
                lines += [f"- {item}" for item in block.content] + [""]
            elif block.kind == "table":
                frame: pd.DataFrame = block.content
                lines.append("| " + " | ".join(_md_cell(c) for c in frame.columns) + " |")
                lines.append("|" + "---|" * len(frame.columns))
                for _, row in frame.iterrows():
                    lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
                lines.append("")
                if block.caption:
                    lines += [f"*{block.caption}*", ""]
            elif block.kind == "image":
                path = Path(block.content)
                try:
                    ref = path.relative_to(relative_to)
                except ValueError:
                    ref = path
                lines += [f"![{path.stem}]({ref.as_posix()})", ""]
                if block.caption:
                    lines += [f"*{block.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1180px; margin: 2em auto; padding: 0 1.5em; line-height: 1.5; }
h1 { font-size: 1.8em; margin-bottom: 0.1em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
.subtitle { color: #666; margin-top: 0; }
.verdict { background: #f4f8fb; border-left: 5px solid #1f77b4; padding: 0.8em 1.2em;
           margin: 1.2em 0 1.5em; }
.verdict h2 { border: none; margin: 0 0 0.3em; }
.verdict li { margin: 0.35em 0; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.4em 0 0.3em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.short { white-space: nowrap; }
td.fail { color: #c0392b; font-weight: 600; }
.caption { color: #555; font-size: 0.88em; margin: 0.2em 0 1.2em; }
figure { margin: 0.8em 0 1.4em; }
figure img { max-width: 100%; border: 1px solid #eee; }
.scroll { overflow-x: auto; }
"""


def _is_number(text: str) -> bool:
    stripped = text.replace("±", "").replace("%", "").replace("+", "").replace("-", "")
    stripped = stripped.replace(".", "").replace(" ", "").replace("e", "")
    return bool(stripped) and stripped.isdigit()


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for column, value in zip(frame.columns, row):
            text = str(value)
            classes = []
            if _is_number(text):
                classes.append("num")
            elif len(text) <= 14:
                classes.append("short")
            if column == "fail" and text in ("fail", "diverged"):
                classes.append("fail")
            cls = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table></div>")


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def to_html(doc: Document) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(doc.title)}</h1>",
             f'<p class="subtitle">{html.escape(doc.subtitle)}</p>',
             '<section class="verdict"><h2>Verdict</h2><ul>']
    parts += [f"<li>{html.escape(line)}</li>" for line in doc.verdict]
    parts.append("</ul></section>")
    for section in doc.sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if block.kind == "text":
                parts.append(f"<p>{html.escape(str(block.content))}</p>")
            elif block.kind == "list":
                parts.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>"
                                              for i in block.content) + "</ul>")
            elif block.kind == "table":
                parts.append(_html_table(block.content))
                if block.caption:
                    parts.append(f'<p class="caption">{html.escape(block.caption)}</p>')
            elif block.kind == "image":
                caption = html.escape(block.caption)
                parts.append(f'<figure><img src="{data_uri(block.content)}" alt="{caption}">'
                             f"<figcaption class=\"caption\">{caption}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
