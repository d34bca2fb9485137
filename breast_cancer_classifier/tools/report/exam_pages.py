"""``exams/<index>.html``: one static page per exam.

The exam's predictions (and calibrated ones), labels, failures, QA flags and attributes;
then each view's images: the picture (crop, malignant overlay, benign overlay) when drawn,
and the crop's numbers from ``data.pkl`` (stage 1-2) and ``qa.csv`` (the QA measures).
"""

import os

from ...core import qa
from ...core.views import LABELS
from ..visualize import HANGING
from .markup import esc, legend, number, page, table
from .pictures import picture_name
from .qa_help import QA_HELP
from .tables import EXAM_PAGES, SHORT, label_text

STAGE12_KEYS = ("window_location", "best_center")  # data.pkl; qa.csv has the distance


def exam_page(ctx, index):
    """The whole HTML document of exam ``index``."""
    run, exam = ctx.run, ctx.run.exams[index]
    links = ['<a href="../index.html#exams">all exams</a>']
    if index > 0:
        links.append(f'<a href="{index - 1}.html">previous exam</a>')
    if index < run.count - 1:
        links.append(f'<a href="{index + 1}.html">next exam</a>')
    head = (f"<header><h1>Exam {index}</h1><nav>{''.join(links)}</nav></header>")
    parts = [_predictions(ctx, index), _failures(ctx, index), _flags(ctx, index),
             _attributes(ctx, index), _visualization(ctx, index)]
    views = "".join(f'<div class="view">{_view(ctx, index, exam, view)}</div>'
                    for row in HANGING for view in row)
    return page(f"Exam {index}", f"{head}<main><section><p>horizontal_flip "
                f"<code>{esc(exam['horizontal_flip'])}</code></p>{''.join(parts)}"
                f"<h2>Views</h2><p>{legend('malignant')}; {legend('benign')}</p>"
                f'<div class="views">{views}</div></section></main>', depth=1, demo=run.demo)


def _predictions(ctx, index):
    rows = []
    for name, values in [(m, v) for m, v in ctx.run.predictions.items()] + \
            [(f"{m} calibrated", v) for m, v in ctx.run.calibrated.items()]:
        rows.append([name, *(number(v) for v in values[index])])
    if ctx.labels is not None:
        rows.append(["labels", *(number(v, 0) for v in ctx.labels[index])])
    return "<h3>Predictions</h3>" + table(("", *(SHORT[label] for label in LABELS)), rows) + \
        (f"<p>Positive breasts: {esc(label_text(ctx.labels[index]) or 'unknown')}</p>"
         if ctx.labels is not None else "")


def _failures(ctx, index):
    failures = ctx.run.exam_failures(index) if ctx.failed[index] else []
    if not failures and not ctx.failed[index]:
        return ""
    return (f'<h3 class="failed">Failed: {esc(ctx.failed[index])}</h3>'
            + table(("stage", "item", "reason"), failures))


def _flag_links(names):
    return " ".join(f'<a class="flag" href="../{QA_HELP}#{esc(n)}">{esc(n)}</a>' for n in names)


def _flags(ctx, index):
    flags = ctx.flags[index]
    return f"<h3>QA flags</h3><p>{_flag_links(flags) if flags else 'none'}</p>"


def _attributes(ctx, index):
    rows = [(name, values[index]) for name, values in ctx.attributes.items()]
    return "<h3>Attributes</h3>" + table(("attribute", "value"), rows)


def _visualization(ctx, index):
    """A link to ``bcc run --visualize``'s picture of the exam, when the run has it."""
    folder = ctx.run.visualizations_dir
    if folder is None:
        return ""
    width = len(str(max(ctx.run.count - 1, 0)))
    path = folder / f"exam_{index:0{width}d}.png"
    if not path.is_file():
        return ""
    relative = os.path.relpath(path, ctx.output_dir / EXAM_PAGES)
    return f'<p>Full-size picture: <a href="{esc(relative)}">{esc(path.name)}</a></p>'


def _view(ctx, index, exam, view):
    if not exam[view]:
        return f"<h3>{view}</h3><p class=\"failed\">no {view} image</p>"
    parts = [f"<h3>{view}</h3>"]
    drawn = ctx.drawn.get(index, {}).get(view, [])
    for k, name in enumerate(exam[view]):
        if k in drawn:
            src = f"../{picture_name(index, view, k)}"
            parts.append(f'<figure class="pictures"><a href="{src}"><img src="{src}" '
                         f'alt="{esc(name)}" loading="lazy"></a><figcaption>{esc(name)}: '
                         "crop; under the malignant heatmap; under the benign heatmap"
                         "</figcaption></figure>")
        else:
            parts.append(f'<p class="muted">{esc(name)}: no picture '
                         f"({esc(ctx.picture_errors.get(index, 'not drawn: --pictures'))})</p>")
        parts.append(_image_table(ctx, index, exam, view, k, name))
    return "".join(parts)


def _image_table(ctx, index, exam, view, k, name):
    rows = []
    for key in STAGE12_KEYS:
        if key in exam and view in exam[key] and k < len(exam[key][view]):
            rows.append((key, exam[key][view][k]))
    found = ctx.qa_by_image.get((index, name))
    if found:
        rows += [(m, found.get(m, "")) for m in qa.MEASURES]
        rows.append(("QA flags", f"<td>{_flag_links(found['flags'].split(';'))}</td>"
                     if found.get("flags") else "none"))
    return table(("", name), rows)
