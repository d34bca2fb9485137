"""One exception family for the whole pipeline.

Every message names the file (or exam and key) involved, what was expected and what was
found, so that a user can fix the input without reading the code. Every exception class of
the package is defined in this module (``tests/test_layout.py`` checks); the modules that
raise them import them from here.
"""

import pickle


class PipelineError(Exception):
    """Base class of every error this package raises on purpose."""


class InputImageError(PipelineError):
    """A mammogram, cropped image or heatmap cannot be read or used."""


class ExamListError(PipelineError):
    """An exam list (or single-image metadata file) is unreadable or malformed."""


class CheckpointError(PipelineError):
    """A weight file cannot be loaded into the model it was given for."""


class OutputExistsError(PipelineError):
    """An output already exists and the user did not ask to overwrite it."""


class SettingsError(PipelineError):
    """Options that do not fit together, or do not fit this machine (exit status 2)."""


class EvaluationInputError(ExamListError):
    """Labels or predictions that cannot be read or do not line up (exit status 2).

    Raised by ``tools.evaluate`` and ``tools.visualize``.
    """


class RunFolderError(ExamListError):
    """A folder that is not a finished run, or report inputs that do not fit it (exit 2).

    Raised by ``tools.report``.
    """


class DownloadError(PipelineError):
    """A file could not be fetched, or what was fetched is not the official file.

    Raised by ``tools.download``.
    """


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something an exam list never holds; it was not loaded.

    Raised by ``exam_list.safe_unpickle``; readers turn it into :class:`ExamListError`.
    Deliberately not a :class:`PipelineError`: callers of ``safe_unpickle`` that catch
    ``pickle.UnpicklingError`` keep catching it.
    """
