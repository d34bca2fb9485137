"""The failure policy shared by every stage (README, "Failures and exit codes").

One bad image or exam never stops the others. Each failure is logged on stderr (stage,
item, reason) and listed in ``<output>.failures.csv`` beside the stage's output. Exit
status: 0 nothing failed, 3 some items failed and the rest is complete, 1 nothing could be
done, 2 bad arguments, an unreadable exam list or an unusable checkpoint.
"""

import contextlib
import os
from pathlib import Path

from . import formats
from .errors import PipelineError
from .runtime import log

EXIT_OK, EXIT_NOTHING_DONE, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 1, 2, 3


def outcome(function, *args, name=None):
    """``(function(*args), None)``, or ``(None, message)`` when it fails.

    For process-pool workers: one item's failure must come back as a message, never stop
    the other items. Our own errors keep their message; anything else is named as
    unexpected, with ``name`` (the file or item) in front.
    """
    try:
        return function(*args), None
    except PipelineError as err:
        return None, str(err)
    except Exception as err:  # noqa: BLE001 - reported, never silent
        return None, f"{name}: unexpected {type(err).__name__}: {err}"


def failures_csv_path(output_path):
    output_path = Path(output_path)
    return output_path.with_name(output_path.name.rstrip("/") + ".failures.csv")


class FailureReport:
    """Collects per-item failures of one stage run."""

    def __init__(self, stage):
        self.stage = stage
        self.failures = []  # (item, reason)

    def add(self, item, reason):
        self.failures.append((str(item), str(reason)))
        log.error("%s: FAILED %s: %s", self.stage, item, reason)

    def __len__(self):
        return len(self.failures)

    def write(self, output_path):
        """Write ``<output>.failures.csv`` if anything failed, else remove a stale one."""
        path = failures_csv_path(output_path)
        if self.failures:
            formats.write_csv(path, ("stage", "item", "reason"),
                         [(self.stage, item, reason) for item, reason in self.failures])
            log.error("%s: %d item(s) failed; see %s", self.stage, len(self.failures), path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def exit_code(self, total):
        """0, 3 or 1 for ``total`` items attempted (an empty run is not a failure)."""
        if not self.failures:
            return EXIT_OK
        return EXIT_NOTHING_DONE if len(self.failures) >= total else EXIT_PARTIAL
