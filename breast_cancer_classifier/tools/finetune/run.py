"""``bcc finetune``: one fine-tuning run, from exam lists and a checkpoint to ``best.p``.

The output folder::

    best.p  last.p            the original's checkpoint format (legacy serialization)
    metrics.csv  curves.png   one row per epoch; training and validation curves
    train_state.pt            optimizer, schedule and random streams after the last epoch
    train_exam_list.pkl  val_exam_list.pkl   the cached exams of each side, labelled
    finetune_settings.json    settings, weights' SHA-256, command line
    failures.csv              exams left out, and why (only when any were)

``--resume`` continues from ``last.p`` and ``train_state.pt`` and ends with the bytes of an
uninterrupted run; ``--overwrite`` replaces these files. Nothing else writes into an
existing folder.
"""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ...core import formats
from ...core.checkpoints import load_weights_file
from ...core.checkpoints.classifier import load_classifier, save_classifier
from ...core.errors import OutputExistsError, SettingsError
from ...core.exam_list import save_exam_list
from ...core.hashing import file_sha256
from ...core.home import default_weight_path
from ...core.run_record import command_line, library_versions
from ...core.runtime import check_precision, log, resolve_device, use_full_fp32
from ...core.views import LABELS
from .data import (PreprocessCache, check_two_classes, load_labelled_exams, split_exams,
                   usable_exams)
from .schedule import EarlyStopping
from .train import Trainer, train_epochs

BEST, LAST, METRICS, CURVES = "best.p", "last.p", "metrics.csv", "curves.png"
STATE, SETTINGS_JSON, FAILURES = "train_state.pt", "finetune_settings.json", "failures.csv"
TRAIN_LIST, VAL_LIST = "train_exam_list.pkl", "val_exam_list.pkl"
OUTPUTS = (BEST, LAST, METRICS, CURVES, STATE, SETTINGS_JSON, FAILURES, TRAIN_LIST, VAL_LIST)
METRIC_COLUMNS = ("epoch", "columns_frozen", "lr_heads", "lr_columns", "train_loss",
                  "val_loss", "val_malignant_auc", "val_benign_auc", "best", "seconds")
DEFAULT_VAL_FRACTION = 0.2
PATCH_MODEL_NAME = "sample_patch_model.p"  # default_weight_path finds it (core.home)


def prepare_output_dir(output_dir, resume, overwrite):
    """Refuse an existing folder unless ``resume`` (which needs a run to continue) or
    ``overwrite`` (which removes the files of an earlier run, and nothing else)."""
    root = Path(output_dir)
    if resume and overwrite:
        raise SettingsError("--resume and --overwrite exclude each other")
    if resume:
        absent = [name for name in (LAST, STATE) if not (root / name).is_file()]
        if absent:
            raise SettingsError(f"{root}: nothing to resume ({', '.join(absent)} absent)")
        return
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{root}: the output folder already exists; pass "
                                    "--resume to continue its run or --overwrite to replace it")
        for name in OUTPUTS:
            if (root / name).exists():
                log.info("finetune: removing %s, left by an earlier run", root / name)
                (root / name).unlink()
    root.mkdir(parents=True, exist_ok=True)


def labelled(exams, labels):
    """The exams with their labels as ``cancer_label`` (what ``evaluate`` reads)."""
    out = []
    for exam, row in zip(exams, labels):
        exam = dict(exam)
        exam["cancer_label"] = {label: int(v) for label, v in zip(LABELS, row)
                                if not np.isnan(v)}
        out.append(exam)
    return out


def gather_exams(exam_list_path, labels_path, val_exam_list_path, val_labels_path,
                 val_fraction, seed):
    """``(all exams, labels, train indices, validation indices)`` (indices into all)."""
    exams, labels = load_labelled_exams(exam_list_path, labels_path)
    if val_exam_list_path is not None:
        if val_fraction is not None:
            raise SettingsError("give --val-exam-list or --val-fraction, not both")
        val_exams, val_labels = load_labelled_exams(val_exam_list_path, val_labels_path)
        train = list(range(len(exams)))
        val = list(range(len(exams), len(exams) + len(val_exams)))
        return exams + val_exams, np.concatenate([labels, val_labels]), train, val
    if val_labels_path is not None:
        raise SettingsError("--val-labels needs --val-exam-list")
    train, val = split_exams(exams, val_fraction or DEFAULT_VAL_FRACTION, seed)
    return exams, labels, train, val


def finetune(exam_list_path, data_folder, output_dir, init_path, settings, *,
             labels_path=None, val_exam_list_path=None, val_labels_path=None,
             val_fraction=None, cache_dir=None, patch_model_path=None,
             device_type="gpu", gpu_number=0, trust_checkpoint=False, num_processes=1,
             resume=False, overwrite=False, stop_after_epoch=None):
    """The ``bcc finetune`` command; returns the exit status (0, or 3 when exams were left
    out). Errors raise (see ``core.errors``)."""
    import torch

    _check_settings(settings)
    patch_model_path = patch_model_path or default_weight_path(PATCH_MODEL_NAME)
    root = Path(output_dir)
    prepare_output_dir(root, resume, overwrite)
    exams, labels, train, val = gather_exams(exam_list_path, labels_path, val_exam_list_path,
                                             val_labels_path, val_fraction, settings.seed)
    device = resolve_device(device_type, gpu_number)
    check_precision(settings.precision, device)
    use_full_fp32()
    init = root / LAST if resume else Path(init_path)
    model = load_classifier(init, settings.model_mode, settings.channels,
                            trust=trust_checkpoint, device=device)
    cache = PreprocessCache(cache_dir or root / "cache")
    data, failures = cache.prepare(exams, data_folder, _heatmap_job(
        settings, patch_model_path, device_type, gpu_number, trust_checkpoint),
        num_processes)
    train, dropped_train = usable_exams(data, train, settings.use_heatmaps, cache.heatmaps_dir)
    val, dropped_val = usable_exams(data, val, settings.use_heatmaps, cache.heatmaps_dir)
    dropped = dropped_train + dropped_val
    _report_failures(root, failures, dropped)
    if not train or not val:
        raise SettingsError(f"{len(train)} training and {len(val)} validation exam(s) are "
                            f"usable; see {root / FAILURES}")
    check_two_classes(labels[val], "the validation exams")
    save_exam_list(labelled([data[i] for i in train], labels[train]), root / TRAIN_LIST)
    save_exam_list(labelled([data[i] for i in val], labels[val]), root / VAL_LIST)

    record = _settings_record(settings, init_path, exam_list_path, val_exam_list_path,
                              train, val, str(device))
    trainer = Trainer(model, settings, device, data, labels, cache, train)
    stopper, metrics, first = EarlyStopping(settings.patience), [], 1
    if resume:
        state = load_weights_file(root / STATE)
        _check_same_run(root, state, record)
        if state.get("finished"):
            log.info("finetune: the run in %s is already finished", root)
            return 0
        trainer.load_state(state["trainer"])
        stopper = EarlyStopping(**state["stopper"])
        metrics, first = list(state["metrics"]), state["epoch"] + 1
    formats.write_bytes_atomic(root / SETTINGS_JSON,
                               (json.dumps(record, indent=1) + "\n").encode())

    def on_epoch(epoch, row, improved):
        metrics.append(row)
        if epoch == 0:  # the starting point: metrics only
            write_metrics(root / METRICS, metrics)
            return
        if improved:
            save_classifier(model, root / BEST)
        save_classifier(model, root / LAST)
        finished = stopper.should_stop or epoch == settings.epochs
        state = {"epoch": epoch, "trainer": trainer.state(), "stopper": stopper.state(),
                 "metrics": metrics, "run": _binding(record), "finished": finished}
        with formats.atomic_path(root / STATE) as tmp:
            torch.save(state, tmp)
        write_metrics(root / METRICS, metrics)
        draw_curves(root / CURVES, metrics)

    with _deterministic():
        train_epochs(trainer, stopper, first, val, on_epoch, stop_after_epoch)
    log.info("finetune: best epoch %d (validation malignant AUC %.4f); wrote %s",
             stopper.best_epoch, stopper.best_auc, root / BEST)
    return 3 if dropped or failures else 0


def _check_settings(settings):
    from ...core.checkpoints.classifier import MODEL_MODES

    if settings.model_mode not in MODEL_MODES:
        raise SettingsError(f"--model-mode must be one of {', '.join(MODEL_MODES)}, got "
                            f"{settings.model_mode!r}")
    for name in ("epochs", "effective_batch_size", "val_num_epochs", "patience"):
        if getattr(settings, name) < 1:
            raise SettingsError(f"{name.replace('_', '-')} must be at least 1")
    if settings.freeze_columns_epochs < 0:
        raise SettingsError("--freeze-columns-epochs must be >= 0")


def _heatmap_job(settings, patch_model_path, device_type, gpu_number, trust):
    if not settings.use_heatmaps:
        return None
    from ...core.patch_runtime import load_patch_runtime

    def make_classify():
        return load_patch_runtime(patch_model_path, device_type, gpu_number, trust)

    return patch_model_path, settings.seed, make_classify


def _report_failures(root, failures, dropped):
    rows = list(failures) + list(dropped)
    for stage, item, reason in dropped:
        log.warning("finetune: %s %s", item, reason)
    if rows:
        formats.write_csv(root / FAILURES, ("stage", "item", "reason"), rows)
        log.warning("finetune: %d exam(s) left out, %d preprocessing failure(s); see %s",
                    len(dropped), len(failures), root / FAILURES)


def _settings_record(settings, init_path, exam_list_path, val_exam_list_path, train, val,
                     device):
    return {"settings": asdict(settings), "init": str(init_path),
            "init_sha256": file_sha256(init_path) if Path(init_path).is_file() else None,
            "exam_list": str(exam_list_path), "val_exam_list": val_exam_list_path and
            str(val_exam_list_path), "train_exams": train, "val_exams": val, "device": device,
            "versions": library_versions(), "command": command_line()}


def _binding(record):
    """What a resumed run must share with the run it continues."""
    return json.dumps({k: record[k] for k in ("settings", "init_sha256", "train_exams",
                                               "val_exams", "device")}, sort_keys=True)


def _check_same_run(root, state, record):
    if state.get("run") != _binding(record):
        raise SettingsError(f"{root / STATE}: this run's settings, initial checkpoint or exams "
                            "differ from those of the run being resumed; resume with the same "
                            "flags, or start afresh with --overwrite")


class _deterministic:
    """Deterministic kernels during the run (restored afterwards): same seed, same bytes."""

    def __enter__(self):
        import torch

        self.previous = (torch.are_deterministic_algorithms_enabled(),
                         torch.is_deterministic_algorithms_warn_only_enabled())
        torch.use_deterministic_algorithms(True, warn_only=True)

    def __exit__(self, *exc):
        import torch

        torch.use_deterministic_algorithms(self.previous[0], warn_only=self.previous[1])


# --------------------------------------------------------------------------- reports
def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return str(value)


def write_metrics(path, metrics):
    formats.write_csv(path, METRIC_COLUMNS,
                      [[_cell(row[c]) for c in METRIC_COLUMNS] for row in metrics])


def draw_curves(path, metrics):
    """Training and validation loss, and validation AUCs, per epoch (a PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = [row for row in metrics if row["epoch"] > 0]
    epochs = [row["epoch"] for row in metrics]
    figure = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(figure)
    losses, aucs = figure.subplots(1, 2)
    losses.plot(epochs, [r["train_loss"] for r in metrics], "o-", label="training")
    losses.plot(epochs, [r["val_loss"] for r in metrics], "o-", label="validation")
    losses.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    losses.legend()
    for key, label in (("val_malignant_auc", "malignant"), ("val_benign_auc", "benign")):
        aucs.plot(epochs, [np.nan if r[key] is None else r[key] for r in metrics], "o-",
                  label=label)
    aucs.set(xlabel="epoch", ylabel="ROC AUC", title="Validation (breast level)", ylim=(0, 1))
    aucs.legend()
    figure.tight_layout()
    with formats.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=80)
