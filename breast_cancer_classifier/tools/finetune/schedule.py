"""The training schedule: warm-up then cosine decay, column freezing, early stopping."""

import math
from dataclasses import dataclass


def warmup_cosine(step, warmup_steps, total_steps):
    """Learning-rate factor of optimizer step ``step`` (0-based): linear warm-up to 1 over
    ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def columns_frozen(epoch, freeze_columns_epochs):
    """Whether the ResNet columns are frozen in ``epoch`` (1-based): the first N epochs."""
    return epoch <= freeze_columns_epochs


@dataclass
class EarlyStopping:
    """Best epoch by validation malignant AUC (ties: lower loss); stop after ``patience``
    epochs without a new best."""

    patience: int
    best_epoch: int = 0
    best_auc: float = -math.inf
    best_loss: float = math.inf
    stale_epochs: int = 0

    def update(self, epoch, auc, loss):
        """Record an epoch; returns True when it is the new best."""
        better = auc > self.best_auc or (auc == self.best_auc and loss < self.best_loss)
        if better:
            self.best_epoch, self.best_auc, self.best_loss = epoch, auc, loss
            self.stale_epochs = 0
        else:
            self.stale_epochs += 1
        return better

    @property
    def should_stop(self):
        return self.stale_epochs >= self.patience

    def state(self):
        return {"patience": self.patience, "best_epoch": self.best_epoch,
                "best_auc": self.best_auc, "best_loss": self.best_loss,
                "stale_epochs": self.stale_epochs}
