"""Fine-tuning the cancer classifiers on one's own labelled exams (``bcc finetune``).

:func:`finetune` runs it; :class:`FinetuneSettings` holds its settings. ``data`` reads
labels, splits and caches stages 1-3; ``train`` is the loop; ``schedule`` the learning rate,
freezing and early stopping; ``run`` the outputs.
"""

from .run import finetune  # noqa: F401
from .train import FinetuneSettings  # noqa: F401
