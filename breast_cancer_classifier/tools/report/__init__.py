"""``bcc report``: one folder of HTML per finished run, opened in a browser from ``file://``.

:func:`build_report` reads the run folder (:mod:`.run_folder`), the labels (:mod:`.labels`)
and the attributes (:mod:`.attributes`), computes the results against labels
(:mod:`.evaluation`: tools.evaluate, tools.calibration, tools.operating_points) and the
subgroup AUCs (:mod:`.subgroups`), draws the pictures (:mod:`.pictures`, :mod:`.figures`)
and writes the pages (:mod:`.index_page`, :mod:`.exam_pages`, :mod:`.qa_help`). The folder::

    index.html   qa.html   exams/<i>.html   assets/report.{css,js}   data/exams.js
    exams.csv   subgroups.csv (with labels)   summary.json   figures/*.png
    thumbs/<i>.jpg   pictures/<i>_<view>_<k>.jpg

is built aside and swapped in whole (an existing report is refused without ``overwrite``).
No file refers to anything outside the folder but the run's own files (relative links).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core import formats
from ...core.errors import OutputExistsError, RunFolderError
from ...core.failures import EXIT_OK, EXIT_PARTIAL
from ...core.runtime import log, parallel_map
from .. import evaluate
from .attributes import exam_attributes
from .evaluation import evaluate_models
from .exam_pages import exam_page
from .figures import subgroup_png
from .markup import write_assets
from .index_page import EXAMS_CSV, FIGURES_DIR, SUBGROUPS_CSV, index_page
from .labels import run_labels
from .pictures import choose_exams, draw_exams
from .qa_help import QA_HELP, qa_help_page
from .run_folder import read_run
from .subgroups import subgroup_results, write_subgroups_csv
from . import tables

REPORT_DIR = "report"  # the default output: RUN_DIR/report
DEFAULT_PICTURES = 200  # about a minute of CPU with full-size mammograms (docs/report.md)
SUMMARY_JSON = "summary.json"


@dataclass
class ReportContext:
    """Everything the pages are written from."""

    run: object
    output_dir: Path
    labels: np.ndarray = None
    label_source: str = None
    attributes: dict = field(default_factory=dict)
    attribute_sources: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    results: dict = field(default_factory=dict)
    subgroups: list = field(default_factory=list)
    subgroup_figures: list = field(default_factory=list)
    flags: list = None
    failed: list = None
    drawn: dict = field(default_factory=dict)
    picture_errors: dict = field(default_factory=dict)
    pictures_rule: str = ""
    qa_by_image: dict = field(default_factory=dict)

    @property
    def drawn_count(self):
        return len(self.drawn)

    @property
    def labelled_count(self):
        return 0 if self.labels is None else int((~np.isnan(self.labels).all(axis=1)).sum())


def build_report(run_dir, output_dir=None, labels=None, attributes=None, dicom_report=None,
                 pictures=DEFAULT_PICTURES, n_bootstrap=evaluate.N_BOOTSTRAP,
                 num_processes=1, overwrite=False):
    """Write the report of the run in ``run_dir``; returns the exit status.

    ``output_dir``: default ``<run_dir>/report``. ``labels``: a labels file (else the
    run's ``data.pkl`` when its exams carry ``cancer_label``). ``attributes``: a CSV with
    ``exam_index``; ``dicom_report``: the report of ``bcc dicom`` (else found beside the
    run's exam list). ``pictures``: the number of exams whose pictures are drawn (the
    highest scored), or None for all. 0 when done; 3 when some exam's pictures could not
    be drawn although the run finished it (the rest is complete).
    """
    run = read_run(run_dir)
    output_dir = Path(output_dir) if output_dir else run.root / REPORT_DIR
    check_output(run, output_dir, overwrite)
    ctx = ReportContext(run=run, output_dir=output_dir)
    ctx.labels, ctx.label_source, ctx.warnings = run_labels(run, labels)
    ctx.attributes, ctx.attribute_sources, more = exam_attributes(run, attributes, dicom_report)
    ctx.warnings += more
    for warning in ctx.warnings:
        log.warning("report: %s", warning)
    ctx.flags, ctx.failed = tables.exam_flags(run), tables.exam_failed(run)
    ctx.qa_by_image = {(int(r["exam"]), r["image"]): r for r in run.qa_rows or [] if r["image"]}
    figures = _labelled_results(ctx, n_bootstrap, num_processes) \
        if ctx.labels is not None else {}
    chosen = choose_exams(run, pictures)
    ctx.pictures_rule = ("all exams" if len(chosen) == run.count else
                         f"the {len(chosen)} highest malignant probabilities; --pictures all "
                         "draws every exam")
    with formats.staged_output_dir(output_dir, overwrite=overwrite) as stage:
        ctx.drawn, ctx.picture_errors = draw_exams(run, chosen, stage, num_processes)
        write_files(ctx, stage, figures)
    return _status(ctx, output_dir)


def _labelled_results(ctx, n_bootstrap, num_processes):
    """Fill in the results and subgroups of ``ctx``; returns ``{file name: PNG bytes}``."""
    def pool(desc):  # a map over num_processes processes
        return lambda function, items: parallel_map(function, items, num_processes, desc)

    run = ctx.run
    ctx.results = evaluate_models(run, ctx.labels, n_bootstrap, map_tasks=pool("Results"))
    ctx.subgroups = subgroup_results(run.predictions, ctx.labels, ctx.attributes, n_bootstrap,
                                     map_tasks=pool("Subgroups"))
    figures = {}
    for result in ctx.results.values():
        figures.update(result.figures)
    for model in run.predictions:
        png = subgroup_png(ctx.subgroups, model)
        if png is not None:
            figures[f"subgroups_{model}.png"] = png
            ctx.subgroup_figures.append(f"subgroups_{model}.png")
    return figures


def check_output(run, output_dir, overwrite):
    """Refuse an existing report without ``overwrite``, and any folder that holds the run
    or is part of it, or that is not a report, even with it."""
    target, root = output_dir.resolve(), run.root.resolve()
    if target == root or root.is_relative_to(target) or any(
            target == p.resolve() or target.is_relative_to(p.resolve())
            for p in run.layout.existing_outputs()):
        raise RunFolderError(f"{output_dir}: is the run folder or part of its outputs; give "
                             f"another --output (default {run.root / REPORT_DIR})")
    if not output_dir.exists():
        return
    if not overwrite:
        raise OutputExistsError(f"{output_dir}: already exists; pass --overwrite to replace "
                                "the report there, or another --output")
    if not (output_dir / "index.html").is_file() or not (output_dir / QA_HELP).is_file():
        raise RunFolderError(f"{output_dir}: exists and is not a report of bcc report (no "
                             "index.html, qa.html); --overwrite replaces reports only")


def write_files(ctx, stage, figures):
    """Every file of the report into the staging folder ``stage``."""
    run = ctx.run
    states = {**{i: 1 for i in ctx.drawn}, **{i: -1 for i in ctx.picture_errors}}
    write_assets(stage)
    columns = tables.columns(run, ctx.labels, ctx.attributes)
    rows = tables.rows(run, ctx.labels, ctx.attributes, ctx.flags, ctx.failed, states)
    tables.write_data_js(stage / tables.DATA_JS, columns, rows, ctx.flags, QA_HELP)
    tables.write_exams_csv(stage / EXAMS_CSV, run, ctx.labels, ctx.attributes, ctx.flags,
                           ctx.failed, states)
    if ctx.labels is not None:
        write_subgroups_csv(stage / SUBGROUPS_CSV, ctx.subgroups)
    (stage / FIGURES_DIR).mkdir()
    for name, png in figures.items():
        (stage / FIGURES_DIR / name).write_bytes(png)
    (stage / tables.EXAM_PAGES).mkdir()
    for index in range(run.count):
        (stage / tables.EXAM_PAGES / f"{index}.html").write_text(exam_page(ctx, index))
    (stage / QA_HELP).write_text(qa_help_page(run.demo))
    (stage / SUMMARY_JSON).write_text(json.dumps(summary(ctx), indent=2) + "\n")
    (stage / "index.html").write_text(index_page(ctx))


def summary(ctx):
    """``summary.json``: the figures of the page, for scripts."""
    return {"run": str(ctx.run.root.resolve()), "exams": ctx.run.count,
            "demo_weights": ctx.run.demo, "labels": ctx.label_source,
            "warnings": ctx.warnings, "pictures_drawn": sorted(ctx.drawn),
            "picture_errors": {str(k): v for k, v in ctx.picture_errors.items()},
            "evaluation": {m: r.result for m, r in ctx.results.items()},
            "operating_points": {m: r.operating for m, r in ctx.results.items()},
            "subgroups": ctx.subgroups, "attribute_sources": ctx.attribute_sources}


def _status(ctx, output_dir):
    unexpected = {i: e for i, e in ctx.picture_errors.items() if not ctx.failed[i]}
    for index, error in list(unexpected.items())[:20]:
        log.error("report: exam %d: pictures not drawn: %s", index, error)
    log.info("report: %s", Path(output_dir) / "index.html")
    if unexpected:
        log.error("report: %d exam(s) finished by the run have no pictures; the rest of the "
                  "report is complete", len(unexpected))
        return EXIT_PARTIAL
    return EXIT_OK


__all__ = ["build_report", "DEFAULT_PICTURES", "REPORT_DIR"]
