"""``index.html``: summary, quality, results against labels, subgroups and the exam table."""

import os
import shlex
from datetime import datetime, timezone

from ... import __version__
from ...core import qa
from .. import evaluate, operating_points
from .markup import esc, interval, legend, page, table
from .qa_help import QA_HELP
from .run_folder import timings
from .subgroups import OVERALL
from .tables import DATA_JS

SUBGROUPS_CSV, EXAMS_CSV = "subgroups.csv", "exams.csv"
FIGURES_DIR = "figures"
SECTIONS = (("summary", "Summary"), ("quality", "Quality"), ("results", "Results"),
            ("subgroups", "Subgroups"), ("exams", "Exams"))


def index_page(ctx):
    """The whole ``index.html`` of a report (``ctx``: the :class:`ReportContext`)."""
    nav = "".join(f'<a href="#{key}">{name}</a>' for key, name in SECTIONS)
    head = (f"<header><h1>Run report: {esc(ctx.run.root.resolve().name)}</h1>"
            f"<nav>{nav}</nav></header>")
    body = "".join([summary_section(ctx), quality_section(ctx), results_section(ctx),
                    subgroups_section(ctx), exams_section(ctx)])
    return page(f"bcc report: {ctx.run.root.name}", f"{head}<main>{body}</main>",
                demo=ctx.run.demo, scripts=(DATA_JS, "assets/report.js"))


def _section(key, title, content):
    return f'<section id="{key}"><h2>{esc(title)}</h2>{content}</section>'


def _run_link(ctx, path, text=None):
    """A relative link from the report to a file of the run (works offline)."""
    relative = os.path.relpath(path, ctx.output_dir)
    return f'<a href="{esc(relative)}">{esc(text or path.name)}</a>'


# --------------------------------------------------------------------------- summary
def summary_section(ctx):
    run, settings = ctx.run, ctx.run.settings
    warnings = "".join(f'<div class="warning">{esc(w)}</div>' for w in ctx.warnings)
    keys = ("seed", "num_epochs", "use_augmentation", "precision", "runtime", "device",
            "batch_size", "heatmap_batch_size", "exam_list_sha256")
    items = [("run folder", esc(run.root.resolve())),
             ("command", f"<code>{esc(shlex.join(settings.get('command') or []))}</code>")]
    items += [(k, esc(settings.get(k))) for k in keys if k in settings]
    items.append(("report made", esc(datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
                                     + f" by breast_cancer_classifier {__version__}")))
    settings_html = '<dl class="settings">' + "".join(
        f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
    cards = "".join(f'<div class="card">{part}</div>' for part in (
        _counts(ctx), _timings(run), _versions(settings)))
    return _section("summary", "Summary", warnings + settings_html + _weights(ctx)
                    + f'<div class="cards">{cards}</div>' + _failures(ctx))


def _weights(ctx):
    settings = ctx.run.settings
    status = {"demo": '<span class="failed">DEMO (untrained)</span>', "not demo": "",
              "unknown": '<span class="muted">file not found: cannot tell</span>'}
    rows = [[role, f"<td><code>{esc(path)}</code></td>",
             f"<td><code>{esc((settings.get('weights_sha256') or {}).get(role, '')[:12])}"
             "</code></td>", f"<td>{status[ctx.run.demo.get(role, 'unknown')]}</td>"]
            for role, path in (settings.get("weights") or {}).items()]
    return "<h3>Weights</h3>" + table(("model", "file", "SHA-256 (first 12)", "demo weights"),
                                      rows)


def _counts(ctx):
    run = ctx.run
    images = sum(len(exam[v]) for exam in run.exams for v in ("L-CC", "R-CC", "L-MLO", "R-MLO"))
    failed = sum(1 for f in ctx.failed if f)
    rows = [("exams", run.count), ("images", images), ("failed exams", failed),
            ("failures recorded", len(run.failures)),
            ("exams with a QA flag", sum(1 for f in ctx.flags if f)),
            ("exams with pictures in this report", f"{ctx.drawn_count} (--pictures)")]
    if ctx.labels is not None:
        rows.append(("labelled exams", f"{ctx.labelled_count} (labels: {ctx.label_source})"))
    return "<h3>Counts</h3>" + table(("what", "count"), rows)


def _timings(run):
    t = timings(run.manifest)
    seconds = lambda v: "" if v is None else f"{v:.1f} s"  # noqa: E731
    rows = [("stages 1-2 (pass 1)", seconds(t["pass1_seconds"])),
            ("exams timed", t["exams_timed"]),
            ("exam seconds: total / median / max",
             " / ".join(seconds(t[k]) for k in ("exam_seconds_total", "exam_seconds_median",
                                                "exam_seconds_max"))),
            ("pass 2 wall time", seconds(t["pass2_wall_seconds"])),
            ("workers", t["workers"]), ("continued (--continue)", t["continued"])]
    return "<h3>Timings (run_manifest.jsonl)</h3>" + table(("what", "value"), rows)


def _versions(settings):
    rows = [(name, version or "not installed")
            for name, version in (settings.get("versions") or {}).items()]
    return "<h3>Library versions (of the run)</h3>" + table(("library", "version"), rows)


def _failures(ctx):
    failures = ctx.run.failures
    if not failures:
        return "<h3>Failures</h3><p>None.</p>"
    shown = failures[:50]
    more = (f"<p>{len(failures) - 50} more in {_run_link(ctx, ctx.run.layout.failures)}.</p>"
            if len(failures) > 50 else f"<p>{_run_link(ctx, ctx.run.layout.failures)}</p>")
    return "<h3>Failures</h3>" + table(("stage", "item", "reason"), shown) + more


# --------------------------------------------------------------------------- quality
def quality_section(ctx):
    run = ctx.run
    if run.qa_rows is None:
        return _section("quality", "Quality", "<p>No qa.csv in the run folder: the quality "
                        "check did not run (see the run's log).</p>")
    summaries = {c.name: c.summary for c in qa.IMAGE_CHECKS}
    rows = []
    for name in qa.CHECK_NAMES:
        hits = [r for r in run.qa_rows if r.get(name) == "1"]
        if not hits:
            continue
        exams = len({r["exam"] for r in hits})
        rows.append([f'<td><a class="flag" href="{QA_HELP}#{name}">{esc(name)}</a></td>',
                     f'<td class="num">{len(hits)}</td>',
                     f'<td class="num"><a href="#exams?flag={esc(name)}">{exams}</a></td>',
                     summaries.get(name, "")])
    content = (table(("flag (what it means)", "rows", "exams (show)", "summary"), rows)
               if rows else "<p>No check fired.</p>")
    return _section("quality", "Quality", f"<p>{len(run.qa_rows)} row(s) of qa.csv (one per "
                    f"image and per missing view). Each flag links to its explanation "
                    f'(<a href="{QA_HELP}">all checks</a>).</p>' + content)


# --------------------------------------------------------------------------- results
def results_section(ctx):
    if ctx.labels is None:
        return _section("results", "Results", "<p>No labels: pass <code>--labels</code> (a "
                        "CSV with left_benign, right_benign, left_malignant, right_malignant, "
                        "or an exam list with cancer_label) for ROC and PR curves, reliability "
                        "and operating points.</p>")
    parts = [f"<p>Labels: {esc(ctx.label_source)}; {ctx.labelled_count} labelled exam(s). "
             "Breast level as <code>bcc evaluate</code>: malignant and benign pool both "
             "breasts; 95% CIs from a percentile bootstrap of exams.</p>"]
    cards = []
    for model, out in ctx.results.items():
        card = [f"<h3>{esc(model)} model</h3>"]
        card += [f'<div class="warning">{esc(n)}</div>' for n in out.notes]
        if out.result is not None:
            card.append(_metrics_table(out.result))
            card += [_figure(f"{FIGURES_DIR}/{name}", _caption(name)) for name in out.figures]
            if out.operating:
                card.append("<h4>Operating points (malignant)</h4>"
                            + _operating_table(out.operating))
        cards.append(f'<div class="model">{"".join(card)}</div>')
    parts.append(f'<div class="models">{"".join(cards)}</div>')
    return _section("results", "Results", "".join(parts))


def _caption(name):
    """``roc_image.png`` -> ``ROC curves``; ``reliability_image_benign.png`` -> ..."""
    kind, _, rest = name[:-len(".png")].partition("_")
    target = rest.rsplit("_", 1)[-1] if kind == "reliability" else ""
    return {"roc": "ROC curves", "pr": "Precision-recall curves",
            "reliability": f"Reliability diagram, {target}",
            "subgroups": f"ROC AUC by subgroup, {rest} model"}.get(kind, name)


def _metrics_table(result):
    rows = []
    for target, entry in result["targets"].items():
        if "n" not in entry:
            rows.append([target, "", entry["note"], "", ""])
            continue
        rows.append([target, f"{entry['n']} ({entry['n_positive']}/{entry['n_negative']})"]
                    + [interval(entry[m]["value"], entry[m]["ci_low"], entry[m]["ci_high"])
                       for m in evaluate.METRICS])
    return table(("target", "breasts (+/-)", *evaluate.METRIC_NAMES.values()), rows)


def _operating_table(result):
    rows = []
    for point in result["points"]:
        for level in operating_points.LEVELS:
            entry = point[level]
            m = entry["confusion_matrix"]
            rates = [interval(entry[r]["value"], entry[r]["ci_low"], entry[r]["ci_high"])
                     if r in entry else "-"
                     for r in ("sensitivity", "specificity", "ppv", "npv", "recall_rate")]
            rows.append([point["requested"], f"{point['threshold']:.6g}", level,
                         m["tp"], m["fp"], m["tn"], m["fn"], *rates])
    return table(("point", "threshold", "level", "TP", "FP", "TN", "FN", "sensitivity",
                  "specificity", "PPV", "NPV", "recall rate"), rows) + \
        f"<p class=\"muted\">{esc(result['rule'])}; exam score: the larger breast.</p>"


def _figure(src, caption):
    half = ' class="half"' if "reliability" in src else ""
    return (f'<figure{half}><a href="{esc(src)}"><img src="{esc(src)}" loading="lazy" '
            f'alt="{esc(caption)}"></a><figcaption>{esc(caption)}</figcaption></figure>')


# --------------------------------------------------------------------------- subgroups
def subgroups_section(ctx):
    if ctx.labels is None:
        return _section("subgroups", "Subgroups", "<p>Needs labels (<code>--labels</code>)."
                        "</p>")
    sources = "; ".join(f"{esc(k)}: {esc(v)}" for k, v in ctx.attribute_sources.items())
    parts = [f"<p>ROC AUC (breast level) with a 95% bootstrap CI for each value of each "
             f"attribute; red rows: CI wholly below the overall AUC; grey: too small to judge "
             f'(also in <a href="{SUBGROUPS_CSV}">{SUBGROUPS_CSV}</a>). Attributes: {sources}.'
             "</p>"]
    parts.append('<div class="models">' + "".join(
        f'<div class="model">{_figure(f"{FIGURES_DIR}/{name}", _caption(name))}</div>'
        for name in ctx.subgroup_figures) + "</div>")
    rows, classes = [], []
    for r in ctx.subgroups:
        rows.append([r["model"], r["label"], r["attribute"], r["value"],
                     f'<td class="num">{r["exams"]}</td>', f'<td class="num">{r["positives"]}</td>',
                     interval(r["auc"], r["ci_low"], r["ci_high"]), r["note"]])
        classes.append("below" if r["below"] else "small" if r["note"].startswith("too")
                       else "overall" if r["attribute"] == OVERALL else None)
    parts.append(table(("model", "label", "attribute", "value", "exams", "positive breasts",
                        "AUC [95% CI]", "note"), rows, classes))
    return _section("subgroups", "Subgroups", "".join(parts))


# --------------------------------------------------------------------------- exams
def exams_section(ctx):
    controls = ('<div class="controls"><label>Show <select class="filter"></select></label>'
                '<label>rows per page <select class="size"><option>25</option>'
                '<option selected>50</option><option>100</option><option>500</option>'
                '</select></label><button class="prev">previous</button>'
                '<button class="next">next</button><span class="count"></span></div>')
    note = (f"<p>Click a header to sort, an exam to open its page. Pictures drawn for "
            f"{ctx.drawn_count} of {ctx.run.count} exams ({esc(ctx.pictures_rule)}). "
            f"{legend('malignant')}. All rows: <a href=\"{EXAMS_CSV}\">{EXAMS_CSV}</a>.</p>")
    shell = ('<div id="exam-table">' + controls +
             "<table><thead><tr></tr><tr></tr></thead><tbody></tbody></table></div>")
    return _section("exams", "Exams", note + shell)


