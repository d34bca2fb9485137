"""``bcc demo``: the sample exams through the whole pipeline, from an empty folder.

Under the demo folder it writes ``sample_data/`` (the phantom exams of :mod:`phantoms`:
``images/`` and ``exam_list_before_cropping.pkl``) and ``output/``, a ``bcc run`` folder made
by :func:`core.pipeline.run_pipeline`. The weights are those of the models folder; the
checkpoints missing there are first filled in with demo weights (:mod:`demo_weights`), and
the summary says loudly when any demo weights were used: their numbers are not predictions.
"""

from dataclasses import dataclass
from pathlib import Path

from ..core.engine import EngineSettings
from ..core.errors import OutputExistsError
from ..core.formats import write_bytes_atomic
from ..core.pipeline import run_pipeline
from ..core.run_layout import RunLayout
from ..core.runtime import log, progress
from . import demo_weights
from .phantoms import EXAM_LIST_NAME, write_sample_data

SAMPLE_DIR, RUN_DIR = "sample_data", "output"
README_NAME = "DEMO_WEIGHTS_README.txt"
ROLES = {"patch": "sample_patch_model.p", "image": "sample_image_model.p",
         "imageheatmaps": "sample_imageheatmaps_model.p"}  # bcc run's three checkpoints
BANNER = """\
************************************************************************
*  DEMO WEIGHTS (untrained): this demo's numbers are NOT predictions.  *
*  Run 'bcc download' for the official weights (needs a network).     *
************************************************************************"""


@dataclass
class DemoResult:
    status: int  # bcc run's exit status
    sample_dir: Path
    layout: RunLayout
    weights: dict  # role -> (path, 'official' | 'demo' | 'other')
    demo_weights_used: bool

    def summary(self):
        """Where everything is, for stdout."""
        lines = [f"sample exams: {self.sample_dir}/images, {self.sample_dir / EXAM_LIST_NAME}"]
        lines += [f"{role} weights: {path} ({state})" for role, (path, state) in
                  self.weights.items()]
        lines += [f"run folder: {self.layout.root}"]
        lines += [f"predictions: {path}" for path in self.layout.csvs.values() if path.exists()]
        if self.demo_weights_used:
            lines += [f"about the demo weights: {self.sample_dir.parent / README_NAME}"]
        return "\n".join(lines)


def run_demo(output_dir, models_dir, num_exams=4, overwrite=False, num_processes=2,
             **settings):
    """Write the sample exams, fill in demo weights, run the pipeline; a :class:`DemoResult`.

    ``settings`` are :class:`EngineSettings` fields (``num_epochs``, ``device_type``, ...).
    An earlier demo in ``output_dir`` is refused unless ``overwrite``.
    """
    output_dir, models_dir = Path(output_dir).absolute(), Path(models_dir)
    layout = RunLayout(output_dir / RUN_DIR)
    if layout.existing_outputs() and not overwrite:
        raise OutputExistsError(f"{layout.root}: holds an earlier demo run; pass --overwrite to "
                                "replace it or choose another --output-dir")
    sample_dir = output_dir / SAMPLE_DIR
    write_sample_data(sample_dir, num_exams=num_exams, overwrite=overwrite,
                      progress_bar=lambda jobs: progress(jobs, desc="Phantoms", unit="image"))
    status = demo_weights.weights_status(models_dir)
    if any(status[name] == "missing" for name in ROLES.values()):
        demo_weights.write_demo_weights(models_dir)
        status = demo_weights.weights_status(models_dir)
    weights = {role: (models_dir / name, status[name]) for role, name in ROLES.items()}
    uses_demo = any(state == "demo" for _, state in weights.values())
    readme = output_dir / README_NAME  # as make demo's sample_output/DEMO_WEIGHTS_README.txt
    if uses_demo:
        write_bytes_atomic(readme, (models_dir / demo_weights.MARKER_NAME).read_bytes())
    else:
        readme.unlink(missing_ok=True)
    settings = EngineSettings(**{f"{role}_model_path": str(path)
                                 for role, (path, _) in weights.items()}, **settings)
    log.info("demo: %d sample exam(s) in %s, outputs to %s", num_exams, sample_dir, layout.root)
    code = run_pipeline(sample_dir / EXAM_LIST_NAME, sample_dir / "images", layout.root,
                        settings, num_processes=num_processes, overwrite=overwrite)
    return DemoResult(code, sample_dir, layout, weights, uses_demo)
