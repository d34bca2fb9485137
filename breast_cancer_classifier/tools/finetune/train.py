"""The fine-tuning loop: training windows, loss, optimizer and schedule, validation, resume.

One training step is one exam: one SPEC 7.2 window per view, drawn with augmentation from
the run's ``numpy.random.RandomState(seed)`` (which also shuffles the exams each epoch),
plus the input Gaussian noise of SPEC 7.1 (std 0.01), drawn from the run's
``torch.Generator``. Gradients accumulate over ``effective_batch_size`` exams per AdamW
step. Validation is ``run_model``'s own code (:func:`classify_exams`, a fresh stream from
the seed, ``val_num_epochs`` augmented repetitions), so ``run_model.py`` on ``best.p``
reproduces the validation predictions.
"""

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ...core.failures import FailureReport
from ...core.runtime import log, precision_context, progress
from ...core.stages.augmentation import draw_exam
from ...core.stage_scripts import classify_exams
from ...core.stages.classify import ClassifierSettings, exam_batch, read_exam_inputs
from ...core.views import LABELS, VIEWS
from ..evaluate import sklearn_metrics, target_arrays
from .schedule import EarlyStopping, columns_frozen, warmup_cosine

INPUT_NOISE_STD = 0.01  # SPEC 7.1: the input noise layer, active in training only
PROBABILITY_FLOOR = 1e-7  # validation loss: log(0) guard


@dataclass(frozen=True)
class FinetuneSettings:
    """What ``bcc finetune`` does besides its paths (defaults in the README)."""

    model_mode: str = "view_split"
    use_heatmaps: bool = False
    epochs: int = 10
    freeze_columns_epochs: int = 0
    lr: float = 1e-4  # the heads
    column_lr: float = 1e-5  # the ResNet columns, once unfrozen
    weight_decay: float = 1e-4
    warmup_steps: int = -1  # optimizer steps; -1: a tenth of the run
    effective_batch_size: int = 8  # exams per optimizer step (gradient accumulation)
    benign_weight: float = 1.0  # loss weight of a positive benign label
    malignant_weight: float = 1.0  # loss weight of a positive malignant label
    val_num_epochs: int = 10  # augmented repetitions averaged in validation
    patience: int = 5
    seed: int = 0
    train_batchnorm: bool = False
    precision: str = "fp32"

    @property
    def channels(self):
        return 3 if self.use_heatmaps else 1

    def classifier_settings(self):
        """Validation's settings: run_model's with augmentation, as ``run.sh`` runs it."""
        return ClassifierSettings(model_mode=self.model_mode, use_heatmaps=self.use_heatmaps,
                                  use_augmentation=True, num_epochs=self.val_num_epochs,
                                  seed=self.seed, precision=self.precision)


# --------------------------------------------------------------------------- loss
def loss_terms(outputs, labels, model_mode):
    """``[(log-probabilities N x 2, label column)]``: each head row with its breast's label.

    view_split: rows 0-3 of the CC and MLO heads are the four labels (SPEC 7.3); image:
    rows 0 (benign) and 1 (malignant) of each view's head, for that view's side.
    """
    if model_mode == "view_split":
        return [(outputs[head][:, row], row) for head in ("CC", "MLO") for row in range(4)]
    terms = []
    for view in VIEWS:
        side = "left" if view.startswith("L") else "right"
        terms.append((outputs[view][:, 0], LABELS.index(f"{side}_benign")))
        terms.append((outputs[view][:, 1], LABELS.index(f"{side}_malignant")))
    return terms


def exam_loss(outputs, labels, settings):
    """Weighted cross-entropy of one exam's heads; labels NaN (not given) are skipped."""
    total, weights = 0.0, 0.0
    for log_probs, column in loss_terms(outputs, labels, settings.model_mode):
        target = labels[column]
        if math.isnan(target):
            continue
        weight = 1.0
        if target == 1:
            weight = (settings.malignant_weight if LABELS[column].endswith("malignant")
                      else settings.benign_weight)
        total = total + weight * -log_probs[:, int(target)].float().mean()
        weights += weight
    return total / weights


def validation_scores(predictions, labels):
    """``(malignant AUC, benign AUC or None, loss)`` of (N, 4) predictions, as the CSV
    holds them (4 decimals), so that ``evaluate`` on run_model's CSV gives the same AUC."""
    rounded = np.array([[float("%.4f" % v) for v in row] for row in predictions])
    aucs = []
    for target in ("malignant", "benign"):
        values = sklearn_metrics(*target_arrays(rounded, labels, target))
        aucs.append(None if values is None else values["roc_auc"])
    given = ~np.isnan(labels)
    p = np.clip(predictions.astype(np.float64)[given], PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    y = labels[given]
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return aucs[0], aucs[1], loss


# --------------------------------------------------------------------------- model setup
def column_parameters(model):
    return list(model.four_view_resnet.parameters())


def head_parameters(model):
    columns = {id(p) for p in column_parameters(model)}
    return [p for p in model.parameters() if id(p) not in columns]


def set_columns_trainable(model, trainable):
    for p in column_parameters(model):
        p.requires_grad_(trainable)


def training_mode(model, train_batchnorm):
    """Train mode; BatchNorm in eval mode (frozen running statistics) unless asked."""
    model.train()
    if not train_batchnorm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    return model


def make_optimizer(model, settings, steps_per_epoch):
    """AdamW with the heads and columns as two groups, and the warm-up/cosine schedule."""
    optimizer = torch.optim.AdamW(
        [{"params": head_parameters(model), "lr": settings.lr},
         {"params": column_parameters(model), "lr": settings.column_lr}],
        weight_decay=settings.weight_decay)
    total = settings.epochs * steps_per_epoch
    warmup = settings.warmup_steps if settings.warmup_steps >= 0 else max(1, total // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup, total))
    return optimizer, scheduler


# --------------------------------------------------------------------------- one epoch
class Trainer:
    """The model, optimizer, schedule and random streams of one run; :meth:`epoch` trains.

    ``data`` is the cached exam list (with centers), ``labels`` its (N, 4) labels,
    ``cache`` a :class:`data.PreprocessCache`.
    """

    def __init__(self, model, settings, device, data, labels, cache, train_indices):
        self.model, self.settings, self.device = model, settings, device
        self.data, self.labels, self.cache = data, labels, cache
        self.train_indices = list(train_indices)
        self.steps_per_epoch = math.ceil(len(self.train_indices) / settings.effective_batch_size)
        self.optimizer, self.scheduler = make_optimizer(model, settings, self.steps_per_epoch)
        self.rng = np.random.RandomState(settings.seed)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.input_settings = ClassifierSettings(use_heatmaps=settings.use_heatmaps)

    def _windows(self, exam):
        """``{view: 1 x C x H_in x W_in}`` training inputs: an augmented window plus noise."""
        inputs = read_exam_inputs(exam, self.cache.cropped_dir, self.cache.heatmaps_dir,
                                  self.input_settings)
        draws = draw_exam(self.rng, {view: len(exam[view]) for view in VIEWS}, 1, True)
        batch = exam_batch(inputs, exam["best_center"], draws, True)
        views = {}
        for view in VIEWS:
            x = torch.from_numpy(batch[view]).permute(0, 3, 1, 2)
            noise = torch.randn(x.shape, generator=self.generator) * INPUT_NOISE_STD
            views[view] = (x + noise).contiguous().to(self.device)
        return views

    def epoch(self, epoch):
        """Train one epoch (1-based); returns the mean training loss."""
        frozen = columns_frozen(epoch, self.settings.freeze_columns_epochs)
        set_columns_trainable(self.model, not frozen)
        training_mode(self.model, self.settings.train_batchnorm)
        order = [self.train_indices[i] for i in self.rng.permutation(len(self.train_indices))]
        accumulate = self.settings.effective_batch_size
        losses = []
        self.optimizer.zero_grad(set_to_none=True)
        bar = progress(total=len(order), desc=f"epoch {epoch}", unit="exam")
        for position, index in enumerate(order):
            views = self._windows(self.data[index])
            with precision_context(self.settings.precision, self.device):
                outputs = self.model(views)
            loss = exam_loss(outputs, self.labels[index], self.settings)
            in_step = min(accumulate, len(order) - (position // accumulate) * accumulate)
            (loss / in_step).backward()
            losses.append(float(loss.detach()))
            if (position + 1) % accumulate == 0 or position + 1 == len(order):
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
            bar.update()
        bar.close()
        return float(np.mean(losses))

    def validate(self, val_indices):
        """``(predictions (N, 4) float32, malignant AUC, benign AUC, loss)`` on the
        validation exams, by run_model's code path."""
        self.model.eval()
        report = FailureReport("finetune validation")
        val_data = [self.data[i] for i in val_indices]
        with torch.no_grad():
            predictions = classify_exams(val_data, self.model, self.cache.cropped_dir,
                                         self.cache.heatmaps_dir,
                                         self.settings.classifier_settings(), self.device,
                                         report)
        if report.failures:
            from ...core.errors import PipelineError

            raise PipelineError(f"validation failed for {len(report.failures)} exam(s): "
                                f"{report.failures[0][1]}")
        predictions = np.stack(predictions)
        return (predictions, *validation_scores(predictions, self.labels[val_indices]))

    # ------------------------------------------------------------------- resume state
    def state(self):
        kind, keys, position, has_gauss, cached = self.rng.get_state()
        return {"optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "numpy_rng": {"keys": torch.from_numpy(keys.astype(np.int64)),
                              "position": int(position), "has_gauss": int(has_gauss),
                              "cached_gaussian": float(cached)},
                "torch_rng": self.generator.get_state()}

    def load_state(self, state):
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng = state["numpy_rng"]
        self.rng.set_state(("MT19937", rng["keys"].numpy().astype(np.uint32), rng["position"],
                            rng["has_gauss"], rng["cached_gaussian"]))
        self.generator.set_state(state["torch_rng"])


def train_epochs(trainer, stopper, first_epoch, val_indices, on_epoch, stop_after=None):
    """Epochs ``first_epoch`` .. ``settings.epochs``, with validation and early stopping.

    ``on_epoch(epoch, row, improved)`` saves the outputs after each; ``stop_after``: stop
    (as if interrupted) after that epoch. Returns the last epoch run.
    """
    epoch = first_epoch - 1
    if first_epoch == 1:  # the starting point, for comparison
        _, malignant_auc, benign_auc, val_loss = trainer.validate(val_indices)
        log.info("finetune: before training: validation loss %.4f, malignant AUC %.4f",
                 val_loss, malignant_auc)
        on_epoch(0, {"epoch": 0, "columns_frozen": "", "lr_heads": None, "lr_columns": None,
                     "train_loss": None, "val_loss": val_loss,
                     "val_malignant_auc": malignant_auc, "val_benign_auc": benign_auc,
                     "best": 0, "seconds": None}, False)
    for epoch in range(first_epoch, trainer.settings.epochs + 1):
        start = time.perf_counter()
        frozen = columns_frozen(epoch, trainer.settings.freeze_columns_epochs)
        train_loss = trainer.epoch(epoch)
        _, malignant_auc, benign_auc, val_loss = trainer.validate(val_indices)
        improved = stopper.update(epoch, malignant_auc, val_loss)
        lrs = trainer.scheduler.get_last_lr()
        row = {"epoch": epoch, "columns_frozen": int(frozen), "lr_heads": lrs[0],
               "lr_columns": 0.0 if frozen else lrs[1], "train_loss": train_loss,
               "val_loss": val_loss, "val_malignant_auc": malignant_auc,
               "val_benign_auc": benign_auc, "best": int(improved),
               "seconds": time.perf_counter() - start}
        log.info("finetune: epoch %d: train loss %.4f, validation loss %.4f, malignant AUC "
                 "%.4f%s", epoch, train_loss, val_loss, malignant_auc,
                 " (best)" if improved else "")
        on_epoch(epoch, row, improved)
        if stopper.should_stop:
            log.info("finetune: no better validation malignant AUC for %d epoch(s); stopping "
                     "(best: epoch %d)", stopper.patience, stopper.best_epoch)
            break
        if stop_after is not None and epoch >= stop_after:
            break
    return epoch

