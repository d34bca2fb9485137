"""Small HTML helpers: escaping, tables, number cells and the page frame.

Every text that comes from a file (names, DICOM values, messages) goes through :func:`esc`;
cells are HTML strings built with these helpers.
"""

import html
import math

from .assets import CSS

ASSETS_DIR = "assets"
CSS_NAME = f"{ASSETS_DIR}/report.css"
DEMO_TEXT = ("DEMO WEIGHTS (untrained): these numbers and heatmaps are NOT predictions")
# Colour stops of visualize.COLORMAPS, for the legends drawn in CSS.
LEGEND_STOPS = {"malignant": ("#400000", "#d00000", "#ff6000", "#ffff40"),
                "benign": ("#002040", "#0060ff", "#00d0ff", "#b0ffff")}


def esc(value):
    return html.escape("" if value is None else str(value))


def number(value, digits=4):
    """A right-aligned table cell; an en dash for None/NaN."""
    empty = value is None or (isinstance(value, float) and math.isnan(value))
    return f'<td class="num">{"&ndash;" if empty else f"{value:.{digits}f}"}</td>'


def interval(value, low, high, digits=3):
    """``0.812 [0.701, 0.905]`` (value only without a CI; n/a without a value)."""
    if value is None:
        return "n/a"
    text = f"{value:.{digits}f}"
    return text if low is None else f"{text} [{low:.{digits}f}, {high:.{digits}f}]"


def table(headers, rows, classes=None):
    """A table from header texts and rows of cell HTML (``<td>`` strings, or plain text
    that is escaped); ``classes``: a ``<tr>`` class per row (or None)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(c if str(c).startswith("<td") else f"<td>{esc(c)}</td>" for c in row)
        cls = classes[i] if classes else None
        body.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def legend(kind):
    stops = ", ".join(LEGEND_STOPS[kind])
    return (f'<span class="legend" style="background: linear-gradient(to right, '
            f'{stops})"></span> {esc(kind)} heatmap, 0 to 1 (opacity grows with the value)')


def banner(demo):
    """The red demo-weights banner (empty when no weight file is demo)."""
    roles = [role for role, status in demo.items() if status == "demo"]
    if not roles:
        return ""
    return (f'<div class="banner" id="demo-banner">{esc(DEMO_TEXT)} (demo files: '
            f'{esc(", ".join(roles))} model)</div>')


def page(title, body, depth=0, demo=None, scripts=()):
    """A whole HTML document; ``depth``: folders below the report root (for links)."""
    up = "../" * depth
    script_tags = "".join(f'<script src="{up}{s}"></script>' for s in scripts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{esc(title)}</title><link rel="stylesheet" href="{up}{CSS_NAME}">'
            f'</head><body>{banner(demo or {})}{body}{script_tags}</body></html>\n')


def write_assets(report_dir):
    from .assets import JS

    folder = report_dir / ASSETS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.css").write_text(CSS)
    (folder / "report.js").write_text(JS)
