"""Minimal, escaping HTML builders for a self-contained report: inline CSS, images as data URIs, no
external resources. Every string passes through `esc`."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fff}
main{max-width:1180px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;border-bottom:2px solid #dde;padding-bottom:4px;margin-top:40px}
h3{font-size:16px;margin-top:24px}
nav ol{columns:2;margin:8px 0}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ccd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f0f2f7;text-align:center}td.text{text-align:left}
td.flag{background:#fde2e1;color:#8a1111;font-weight:600}td.muted{color:#999}
td.pass{background:#e3f5e9}td.noise{background:#fff3d6}td.fail{background:#fde2e1}
.caption{color:#555;font-size:12.5px;max-width:1000px}
.badge{display:inline-block;padding:4px 12px;border-radius:12px;font-weight:700;color:#fff}
.accept{background:#1f8a4c}.defer{background:#b3261e}.fragile{background:#c77700}
figure{margin:12px 0}figure img{max-width:100%;border:1px solid #eee}
.notrun{color:#777;font-style:italic}
"""


@dataclass(frozen=True)
class Cell:
    """A table cell: its text and an optional CSS class (flag, muted, pass, noise, fail, text)."""

    text: str
    css: str = ""
    span: int = 1  # columns this cell spans


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def table(header: list[str], rows: list[list[Cell | str]], caption: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [c if isinstance(c, Cell) else Cell(str(c)) for c in row]
        body.append("<tr>" + "".join(_td(c) for c in cells) + "</tr>")
    cap = f'<p class="caption">{esc(caption)}</p>' if caption else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{cap}"


def _td(cell: Cell) -> str:
    attrs = (f' class="{esc(cell.css)}"' if cell.css else "") + (f' colspan="{cell.span}"' if cell.span > 1 else "")
    return f"<td{attrs}>{esc(cell.text)}</td>"


def para(text: str, css: str = "") -> str:
    return f'<p class="{esc(css)}">{esc(text)}</p>' if css else f"<p>{esc(text)}</p>"


def bullets(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def heading(level: int, text: str) -> str:
    return f"<h{level}>{esc(text)}</h{level}>"


def figure(path: Path, alt: str) -> str:
    """The PNG at `path` inlined as a data URI, or a note when it is absent."""
    if not path.is_file():
        return para(f"Figure not available ({path}).", "notrun")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}"><figcaption class="caption">' \
           f"{esc(alt)}</figcaption></figure>"


def section(section_id: str, title: str, body: list[str]) -> str:
    return f'<section id="{esc(section_id)}">{heading(2, title)}{"".join(body)}</section>'


def page(title: str, intro: list[str], sections: list[tuple[str, str, list[str]]]) -> str:
    """The whole document: title, intro, a table of contents, then the sections (id, title, body parts)."""
    toc = "<nav><ol>" + "".join(f'<li><a href="#{esc(i)}">{esc(t)}</a></li>' for i, t, _ in sections) + "</ol></nav>"
    parts = "".join(section(i, t, b) for i, t, b in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><main><h1>{esc(title)}</h1>{''.join(intro)}{toc}{parts}</main>"
            "</body></html>\n")
