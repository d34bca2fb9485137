"""One exception family for the whole pipeline.

Every message names the file (or exam and key) involved, what was expected and what was
found, so that a user can fix the input without reading the code.
"""


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
