"""``bcc export``: every network to ONNX, ``torch.export`` programs and TF SavedModels, checked.

Each export is written beside its target under a temporary name, loaded back (ONNX in ONNX
Runtime, ``.pt2`` with ``torch.export.load``, a SavedModel with the TF port's loader), run
on the check inputs beside the PyTorch module, and its largest absolute difference from
PyTorch printed. Within its tolerance it is moved into place; over it, or when exporting
fails, it is removed and reported, and the other exports go on (exit 3, the failure
policy). Checkpoints are all loaded before anything is written, so a checkpoint of the
wrong kind stops the run with exit 2 and leaves no file. The networks and their input and
output names are described in :mod:`tools.export_networks`.

ONNX files are written by ``core.patch_runtime.export_onnx``, the export of stage 3's
cached graph (TorchScript exporter, opset 17, BatchNorms kept apart from the convolutions,
dynamic batch axis), with the networks' plain signatures: stage 3's graph (NHWC patches,
softmax) and its cache are untouched.
"""

import contextlib
import importlib.util
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import formats
from ..core.errors import OutputExistsError, SettingsError
from ..core.failures import EXIT_NOTHING_DONE, EXIT_OK, EXIT_PARTIAL
from ..core.home import weight_default
from ..core.patch_runtime import export_onnx
from ..core.runtime import log
from . import export_networks as nets

FORMATS = ("onnx", "pt2", "savedmodel")
SUFFIX = {"onnx": ".onnx", "pt2": ".pt2", "savedmodel": "_savedmodel"}
PATCH_TOLERANCE = 1e-5
CLASSIFIER_TOLERANCE = 1e-4
CHECKS_CSV = "export_checks.csv"
TF_HINT = ("the savedmodel format needs TensorFlow and the Keras ports: pip install "
           "'breast-cancer-classifier[tf]' (or tensorflow-cpu)")


@dataclass(frozen=True)
class ExportSettings:
    """Weight files (run.sh's and run_single.sh's defaults), the check exam and tolerances."""

    patch_model_path: str = weight_default("sample_patch_model.p")
    image_model_path: str = weight_default("sample_image_model.p")
    imageheatmaps_model_path: str = weight_default("sample_imageheatmaps_model.p")
    image_mode_model_path: str = weight_default("ImageOnly__ModeImage_weights.p")
    imageheatmaps_mode_model_path: str = weight_default("ImageHeatmaps__ModeImage_weights.p")
    view: str = "L-CC"  # the single-image networks' view
    check_exam: str = "sample_data/images/0"
    check_heatmaps: str = None
    window_scale: float = 1.0  # < 1: classifiers for smaller windows (quick checks)
    patch_tolerance: float = PATCH_TOLERANCE
    classifier_tolerance: float = CLASSIFIER_TOLERANCE
    trust_checkpoint: bool = False

    def tolerance(self, network):
        return (self.patch_tolerance if network.tolerance_kind == "patch"
                else self.classifier_tolerance)


@dataclass
class CheckResult:
    network: str
    format: str
    path: Path
    max_abs_diff: float = None  # None when the export or its reload failed
    tolerance: float = None
    error: str = None
    seconds: float = 0.0  # export, reload and check

    @property
    def ok(self):
        return self.error is None


def artifact_path(output_dir, network_name, fmt):
    return Path(output_dir) / f"{network_name}{SUFFIX[fmt]}"


def plan_exports(networks, formats_):
    """``[(network, format)]`` in table order; the SavedModel only for the Keras ports."""
    return [(nets.NETWORKS[n], f) for n in networks for f in formats_
            if f != "savedmodel" or nets.NETWORKS[n].keras]


def check_names(networks, formats_):
    unknown = [n for n in networks if n not in nets.NETWORKS]
    if unknown:
        raise SettingsError(f"unknown network(s) {', '.join(unknown)}; choose from "
                            f"{', '.join(nets.NETWORKS)}")
    unknown = [f for f in formats_ if f not in FORMATS]
    if unknown:
        raise SettingsError(f"unknown format(s) {', '.join(unknown)}; choose from "
                            f"{', '.join(FORMATS)}")
    if not networks or not formats_:
        raise SettingsError("nothing to export: give at least one network and one format")


def tf_port():
    """``(export_saved_model, load_saved_model)`` of the TF port, or a SettingsError saying
    what to install."""
    if importlib.util.find_spec("tensorflow") is None:
        raise SettingsError(f"TensorFlow is not installed; {TF_HINT}")
    try:
        from .tf_port import export_saved_model, load_saved_model
    except ImportError as err:
        raise SettingsError(f"cannot import the TF port ({err}); {TF_HINT}") from err
    return export_saved_model, load_saved_model


def export_all(output_dir, settings, networks=tuple(nets.NETWORKS), formats_=FORMATS,
               formats_explicit=True, overwrite=False):
    """Export and check; prints one line per export on stdout. Returns the exit status."""
    check_names(networks, formats_)
    nets.scaled_window_size("L-CC", settings.window_scale)  # refuses a bad scale now
    if not (settings.patch_tolerance >= 0 and settings.classifier_tolerance >= 0):
        raise SettingsError("tolerances must be >= 0")
    port = None
    if "savedmodel" in formats_ and any(nets.NETWORKS[n].keras for n in networks):
        try:
            port = tf_port()
        except SettingsError as err:
            if formats_explicit:
                raise
            log.warning("export: savedmodel skipped: %s", err)
            formats_ = [f for f in formats_ if f != "savedmodel"]
    elif formats_explicit and list(formats_) == ["savedmodel"]:
        raise SettingsError("the savedmodel format exists only for the networks with Keras "
                            "ports: " + ", ".join(n for n, v in nets.NETWORKS.items() if v.keras))
    exports = plan_exports(networks, formats_)
    for network, fmt in exports:
        path = artifact_path(output_dir, network.name, fmt)
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path}: output already exists; remove it or pass "
                                    "--overwrite to replace it")
    # Every checkpoint first: one of the wrong kind stops the run before any file is written.
    modules = {}
    for name in dict.fromkeys(n.name for n, _ in exports):
        network = nets.NETWORKS[name]
        modules[name] = nets.load_torch_network(
            network, getattr(settings, network.checkpoint), settings.view,
            settings.trust_checkpoint)
    exam = nets.read_check_exam(settings.check_exam, settings.check_heatmaps)
    Path(output_dir).mkdir(parents=True, exist_ok=True)

    results = []
    for name, module in modules.items():
        network = nets.NETWORKS[name]
        inputs = nets.check_inputs(network, exam, settings.view, settings.window_scale)
        reference = torch_outputs(network, module, inputs)
        for fmt in (f for n, f in exports if n.name == name):
            log.info("export: %s to %s ...", name, fmt)
            result = export_one(network, module, fmt, inputs, reference,
                                artifact_path(output_dir, name, fmt),
                                settings.tolerance(network), port)
            print(format_result(result), flush=True)
            results.append(result)
    write_checks_csv(Path(output_dir) / CHECKS_CSV, results)
    failed = [r for r in results if not r.ok]
    for r in failed:
        log.error("export: FAILED %s %s: %s", r.network, r.format, r.error)
    if not failed:
        return EXIT_OK
    return EXIT_NOTHING_DONE if len(failed) == len(results) else EXIT_PARTIAL


def torch_outputs(network, module, inputs):
    import torch

    with torch.inference_mode():
        out = nets.exportable(network, module)(*(torch.from_numpy(x) for x in inputs))
    return [o.numpy() for o in out]


def export_one(network, module, fmt, inputs, reference, target, tolerance, port):
    """Export, reload, compare; the file is moved onto ``target`` only within ``tolerance``."""
    result = CheckResult(network.name, fmt, target, tolerance=tolerance)
    start = time.perf_counter()
    try:
        return _export_checked(network, module, fmt, inputs, reference, target, port, result)
    finally:
        result.seconds = time.perf_counter() - start


def _export_checked(network, module, fmt, inputs, reference, target, port, result):
    tolerance = result.tolerance
    with _staging(target) as staged:
        try:
            run = EXPORTERS[fmt](network, module, inputs, staged, port)
            outputs = run(inputs)
            result.max_abs_diff = max_abs_difference(reference, outputs)
        except Exception as err:  # noqa: BLE001 - one export's failure is reported, not fatal
            result.error = f"export or reload failed: {type(err).__name__}: {err}"
            return result
        if not result.max_abs_diff <= tolerance:  # NaN fails too
            result.error = (f"max abs difference from PyTorch {result.max_abs_diff:.3g} is "
                            f"over the tolerance {tolerance:g}; {target.name} removed")
            return result
        _move_into_place(staged, target)
    return result


def max_abs_difference(reference, outputs):
    if len(reference) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs, PyTorch gives {len(reference)}")
    worst = 0.0
    for ref, out in zip(reference, outputs):
        out = np.asarray(out)
        if out.shape != ref.shape:
            raise ValueError(f"output of shape {out.shape}, PyTorch gives {ref.shape}")
        worst = max(worst, float(np.max(np.abs(out.astype(np.float64) - ref))))
    return worst


@contextlib.contextmanager
def _staging(target):
    """A fresh path in a temporary folder beside ``target``; the folder goes in any case."""
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial",
                                   dir=target.parent))
    try:
        yield folder / target.name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _move_into_place(staged, target):
    if target.is_dir():
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        os.replace(target, old)
        os.replace(staged, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, target)


# --------------------------------------------------------------------------- formats
def write_onnx(network, module, inputs, path, port=None):
    """ONNX (stage 3's exporter settings, dynamic batch); returns its ONNX Runtime runner."""
    import onnxruntime as ort
    import torch

    names_in, names_out = nets.input_names(network), nets.output_names(network)
    example = tuple(torch.from_numpy(x) for x in nets.trace_inputs(inputs))
    export_onnx(nets.exportable(network, module), example, path, names_in, names_out)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(arrays):
        return session.run(list(names_out), dict(zip(names_in, arrays)))
    return run


def write_pt2(network, module, inputs, path, port=None):
    """A ``torch.export`` program (dynamic batch) saved and loaded back; returns its runner."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    names_in = nets.input_names(network)
    wrapped = nets.exportable(network, module)
    example = tuple(torch.from_numpy(x) for x in nets.trace_inputs(inputs))
    shapes = {("x" if len(names_in) == 1 else name): {0: batch} for name in names_in}
    with torch.no_grad():
        program = torch.export.export(wrapped, example, dynamic_shapes=shapes)
    torch.export.save(program, str(path))
    loaded = torch.export.load(str(path)).module()

    def run(arrays):
        with torch.no_grad():
            return [o.numpy() for o in loaded(*(torch.from_numpy(x) for x in arrays))]
    return run


def write_savedmodel(network, module, inputs, path, port):
    """The TF port's SavedModel (single-input networks); returns its runner.

    The port's patch model gives the PyTorch module's logits; the check compares them after
    the softmax, as the other formats (export_networks)."""
    export_saved_model, load_saved_model = port
    export_saved_model(module, network.kind, str(path))
    loaded = load_saved_model(str(path))

    def run(arrays):
        out = np.asarray(loaded(arrays[0]), dtype=np.float32)
        if network.kind == "patch":
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        return [out]
    return run


EXPORTERS = {"onnx": write_onnx, "pt2": write_pt2, "savedmodel": write_savedmodel}


# --------------------------------------------------------------------------- report
def format_result(result):
    diff = "-" if result.max_abs_diff is None else f"{result.max_abs_diff:.3g}"
    status = "ok" if result.ok else "FAILED (removed)"
    return (f"{result.network:<22} {result.format:<10} max abs diff {diff:>9} "
            f"(tolerance {result.tolerance:g}) {result.seconds:6.1f} s  {status}  {result.path}")


def write_checks_csv(path, results):
    rows = [(r.network, r.format, r.path.name if r.ok else "",
             "" if r.max_abs_diff is None else repr(r.max_abs_diff), repr(r.tolerance),
             "ok" if r.ok else r.error) for r in results]
    formats.write_csv(path, ("network", "format", "file", "max_abs_diff", "tolerance",
                             "status"), rows)
