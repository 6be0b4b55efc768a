"""A report as a list of blocks, rendered to Markdown (figures linked beside it) and to one
self-contained HTML file (figures embedded as data URIs), so that both say the same thing.

Inline text may hold ``code``, **bold** and [links](target); the HTML renderer converts those.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Image:
    path: Path  # a PNG beside the report
    caption: str


@dataclass(frozen=True)
class Raw:
    """Markdown made elsewhere (headings ``#``, bullets ``- `` and paragraphs only)."""

    markdown: str

    def blocks(self) -> list:
        parsed, bullets = [], []
        for line in self.markdown.splitlines():
            if line.startswith("- "):
                bullets.append(line[2:])
                continue
            if bullets:
                parsed, bullets = parsed + [Bullets(bullets)], []
            if line.startswith("#"):
                parsed.append(Heading(line.lstrip("#").strip(), len(line) - len(line.lstrip("#"))))
            elif line.strip():
                parsed.append(Paragraph(line))
        return parsed + ([Bullets(bullets)] if bullets else [])


Block = Heading | Paragraph | Bullets | Table | Image | Raw


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Raw):
            parts.append(block.markdown.strip())
        elif isinstance(block, Table):
            lines = [
                "| " + " | ".join(_markdown_cell(h) for h in block.header) + " |",
                "|" + "---|" * len(block.header),
            ]
            lines += ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        else:
            parts.append(f"![{block.caption}]({block.path.name})")
    return "\n\n".join(parts) + "\n"


_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")


def _inline_html(text: str) -> str:
    """Escape ``text`` and turn its ``code``, **bold** and [links](target) into HTML."""
    out, end = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[end : match.start()]))
        code, bold, label, target = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{html.escape(bold)}</strong>")
        else:
            out.append(f'<a href="{html.escape(target)}">{html.escape(label)}</a>')
        end = match.end()
    return "".join(out) + html.escape(text[end:])


def _embedded(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
    "th,td{border:1px solid #ccc;padding:0.25em 0.5em;text-align:left}th{background:#f3f3f3}"
    "img{max-width:100%}code{background:#f3f3f3;padding:0 0.2em}"
)


def to_html(blocks: Sequence[Block], title: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
    ]
    flat = [part for given in blocks for part in (given.blocks() if isinstance(given, Raw) else [given])]
    for block in flat:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            header = "".join(f"<th>{_inline_html(h)}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            caption = html.escape(block.caption)
            parts.append(
                f'<figure><img src="{_embedded(block.path)}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
