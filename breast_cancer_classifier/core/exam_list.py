"""Exam lists and single-image metadata: safe reading, validation and writing (SPEC section 3).

An exam list is a list of dicts, one per exam::

    {"horizontal_flip": "NO", "L-CC": ["0_L_CC"], "R-CC": [...], "L-MLO": [...], "R-MLO": [...]}

Stages add keys such as ``window_location``, each ``{view: [one value per image]}``. Keys
the stages do not know (``cancer_label`` of metarepository lists, say) pass through.

Pickles are read with a restricted unpickler that can only build plain containers, numbers,
strings and the numpy scalar/array types such lists hold; anything else is refused before
it runs. ``.json`` files are read and written as JSON.
"""

import io as _io
import json
import pickle
from pathlib import Path

import numpy as np

from . import formats
from .errors import ExamListError, UnsafePickleError
from .views import VIEWS

# Keys stages 1 and 2 add, per view, one value per image (SPEC sections 3-5).
STAGE_KEYS = ("window_location", "rightmost_points", "bottommost_points",
              "distance_from_starting_side", "best_center")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".p")

# The only globals a pickled exam list may reference: numpy scalars and arrays as numpy
# itself pickles them (module paths of numpy 1.x and 2.x), and plain containers.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("builtins", "set"), ("builtins", "frozenset"), ("collections", "OrderedDict"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to load global '{module}.{name}': exam lists may only hold lists, "
            "dicts, strings, numbers and numpy values")


def safe_unpickle(data):
    """Unpickle ``data`` (bytes) allowing only the types an exam list holds."""
    return _RestrictedUnpickler(_io.BytesIO(data)).load()


# --------------------------------------------------------------------------- plain values
def _plain(value):
    """Numpy scalars/arrays → Python ints/floats/tuples; lists of stage values → tuples."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def _to_json_ready(value):
    if isinstance(value, dict):
        return {k: _to_json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


# --------------------------------------------------------------------------- generic files
def _read_structure(path, what):
    path = Path(path)
    if not path.is_file():
        raise ExamListError(f"{path}: {what} not found")
    data = path.read_bytes()
    if path.suffix.lower() == ".json":
        try:
            return json.loads(data)
        except ValueError as err:
            raise ExamListError(f"{path}: not valid JSON ({err})") from err
    try:
        return safe_unpickle(data)
    except UnsafePickleError as err:
        raise ExamListError(f"{path}: {err}") from err
    except Exception as err:  # a truncated or foreign file fails in many ways
        raise ExamListError(f"{path}: cannot read {what} as a pickle "
                            f"({type(err).__name__}: {err})") from err


def _write_structure(path, obj):
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.dumps(_to_json_ready(obj), indent=1).encode()
    elif suffix in PICKLE_SUFFIXES:
        data = pickle.dumps(obj, protocol=4)
    else:
        raise ExamListError(f"{path}: unknown extension; use .pkl for a pickle or .json")
    formats.write_bytes_atomic(path, data)


# --------------------------------------------------------------------------- exam lists
def load_exam_list(path):
    """Read and validate an exam list (pickle or ``.json``); stage values become tuples."""
    exam_list = _read_structure(path, "exam list")
    validate_exam_list(exam_list, path)
    return [_normalized_exam(exam) for exam in exam_list]


def save_exam_list(exam_list, path):
    """Write an exam list atomically, as a pickle (``.pkl``) or JSON (``.json``)."""
    _write_structure(path, list(exam_list))


def _normalized_exam(exam):
    exam = dict(exam)
    for view in VIEWS:
        exam[view] = list(exam[view])
    for key in STAGE_KEYS:
        if key in exam:
            exam[key] = {view: [_plain(v) for v in exam[key][view]] for view in VIEWS}
    return exam


def validate_exam_list(exam_list, path="exam list"):
    """Raise :class:`ExamListError` naming the exam index and key of the first problem."""
    if not isinstance(exam_list, list):
        raise ExamListError(f"{path}: expected a list of exams, found {type(exam_list).__name__}")
    seen = {}
    for index, exam in enumerate(exam_list):
        where = f"{path}: exam {index}"
        if not isinstance(exam, dict):
            raise ExamListError(f"{where}: expected a dict, found {type(exam).__name__}")
        if exam.get("horizontal_flip") not in ("YES", "NO"):
            raise ExamListError(f"{where}: key 'horizontal_flip' must be 'YES' or 'NO', "
                                f"found {exam.get('horizontal_flip')!r}")
        for view in VIEWS:
            files = exam.get(view)
            if not isinstance(files, (list, tuple)):
                raise ExamListError(f"{where}: key {view!r} must be a list of short file "
                                    f"paths, found {'nothing' if files is None else repr(files)}")
            for name in files:
                if not isinstance(name, str) or not name:
                    raise ExamListError(f"{where}: key {view!r} holds {name!r}, "
                                        "expected a non-empty string")
                if name in seen:
                    raise ExamListError(
                        f"{where}: key {view!r}: short file path {name!r} is already listed "
                        f"(exam {seen[name][0]}, {seen[name][1]}); each image may appear once")
                seen[name] = (index, view)
        for key in STAGE_KEYS:
            if key in exam:
                _validate_stage_key(exam, key, where)


def _validate_stage_key(exam, key, where):
    values = exam[key]
    if not isinstance(values, dict):
        raise ExamListError(f"{where}: key {key!r} must map each view to a list")
    for view in VIEWS:
        per_view = values.get(view)
        if not isinstance(per_view, (list, tuple)) or len(per_view) != len(exam[view]):
            raise ExamListError(
                f"{where}: key {key!r}[{view!r}] must list one value per image of {view!r} "
                f"({len(exam[view])}), found {per_view!r}")


def iter_images(exam_list):
    """Yield ``(exam_index, view, list_index, short_file_path)`` in exam, VIEWS, list order."""
    for exam_index, exam in enumerate(exam_list):
        for view in VIEWS:
            for list_index, name in enumerate(exam[view]):
                yield exam_index, view, list_index, name


def add_stage_key(exam, key, values_by_view):
    """Return a copy of ``exam`` with ``key`` added; adding an existing key is an error."""
    if key in exam:
        raise ExamListError(f"exam {exam_names(exam)}: key {key!r} is already present; "
                            "was this exam list already processed by this stage?")
    new = dict(exam)
    new[key] = {view: list(values_by_view[view]) for view in VIEWS}
    return new


def exam_names(exam):
    """A short readable description of an exam: its image names."""
    names = [n for view in VIEWS for n in exam.get(view, [])]
    return ", ".join(names) if names else "(no images)"


# --------------------------------------------------------------------------- single image
SINGLE_KEYS = ("horizontal_flip", "full_view", "side", "view")


def load_metadata(path):
    """Read single-image metadata (SPEC section 9), pickle or ``.json``, stage values as tuples."""
    meta = _read_structure(path, "metadata file")
    if not isinstance(meta, dict):
        raise ExamListError(f"{path}: expected a dict of image metadata, "
                            f"found {type(meta).__name__}")
    missing = [k for k in SINGLE_KEYS if k not in meta]
    if missing:
        raise ExamListError(f"{path}: metadata lacks key(s) {', '.join(missing)}")
    if meta["full_view"] not in VIEWS:
        raise ExamListError(f"{path}: key 'full_view' must be one of {', '.join(VIEWS)}, "
                            f"found {meta['full_view']!r}")
    return {k: (_plain(v) if k in STAGE_KEYS else v) for k, v in meta.items()}


def save_metadata(meta, path):
    _write_structure(path, dict(meta))
