"""``qa.html``: what each quality flag means, inside the report, so that links work offline.

The text is ``docs/qa.md``'s "The checks" section (headings ``### `name``` become anchors
``#name``, the anchors GitHub gives that file), read from the source tree the package runs
from. An installed package without the docs falls back to each check's one-line summary
from :mod:`core.qa` and names the file to read.
"""

import re
from pathlib import Path

from ...core import qa
from .markup import esc, page

DOCS_QA = Path(__file__).resolve().parents[3] / "docs" / "qa.md"
SECTION = "## The checks"
QA_HELP = "qa.html"


def _inline(text):
    """Escape, then ``code``, **bold** and [links](url) of one paragraph."""
    text = esc(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)


def checks_html(markdown):
    """HTML of the markdown's "The checks" section: ``###`` headings and paragraphs."""
    start = markdown.find(SECTION)
    if start < 0:
        return None
    lines = markdown[start + len(SECTION):].splitlines()
    parts, paragraph = [], []

    def flush():
        if paragraph:
            parts.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    for line in lines:
        if line.startswith("## "):
            break
        heading = re.match(r"###\s+`?([A-Za-z0-9_]+)`?\s*$", line)
        if heading:
            flush()
            name = heading.group(1)
            parts.append(f'<h3 id="{esc(name)}"><code>{esc(name)}</code></h3>')
        elif line.strip():
            paragraph.append(line.strip())
        else:
            flush()
    flush()
    return "\n".join(parts)


def fallback_html():
    summaries = {c.name: c.summary for c in qa.IMAGE_CHECKS}
    return "\n".join(f'<h3 id="{esc(name)}"><code>{esc(name)}</code></h3>'
                     f"<p>{esc(summaries.get(name, ''))}</p>" for name in qa.CHECK_NAMES)


def qa_help_page(demo):
    """The whole ``qa.html`` document."""
    body = checks_html(DOCS_QA.read_text()) if DOCS_QA.is_file() else None
    source = (f"From <code>docs/qa.md</code> ({esc(DOCS_QA)})." if body else
              "docs/qa.md was not found beside this installation: each check's summary "
              "follows; the project's docs/qa.md says why each matters and what to do.")
    body = body or fallback_html()
    return page("Quality checks", f'<header><h1>Quality checks</h1><nav><a href="index.html">'
                f"report</a></nav></header><main><section><p>{source}</p>{body}</section>"
                "</main>", demo=demo)
