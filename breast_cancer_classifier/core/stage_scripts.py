"""The original's stage-3 and stage-4 scripts as functions over files: ``run_producer``,
``run_model`` and their single-image forms (SPEC 6, 7 and 9).

Each one makes its plan from its own flags (seed, exam list, batch size) and runs the
engine's per-image and per-exam functions (:mod:`engine`), the same ones ``bcc run`` runs,
so a fix to stages 3-4 is made once. What is theirs alone is the file side: where inputs are
read from, the failure report beside the output, and the exit status.

Failure policy (README, "Failures and exit codes"), stage 3: an image that cannot be read
or is smaller than 256 pixels on a side fails alone and is reported, and the stride stream
stays in step for the images after it:

* a missing or unreadable image draws the strides that its shape would have drawn, taking
  the shape from the exam list's ``window_location`` (its crop box), so later images get
  exactly the strides of a run in which it was readable; without ``window_location`` the
  shape is unknown, nothing is drawn and a warning says later strides may differ;
* an image smaller than 256 pixels on a side draws nothing (the reference cannot patch
  it either: it stops the whole run there).

Stage 4: an exam that lacks a view, or whose image or heatmap is missing or unreadable, gets
a row of empty values in the CSV (rows stay aligned with the exam list), is listed in
``<output>.failures.csv``, and the run exits 3. Its random numbers are still drawn, exactly
as for a complete exam, so no other row changes.
"""

from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

from . import formats
from .allocator import heap_for_classifiers
from .engine import exam_heatmaps, predict_exam, write_exam_heatmaps
from .errors import ExamListError, InputImageError, PipelineError
from .exam_list import exam_names, iter_images, load_exam_list
from .failures import FailureReport
from .plan import StrideStream, crop_shape, window_draws
from .prefetch import prefetch
from .runtime import log, progress
from .stages import classify
from .stages.heatmaps import DEFAULT_BATCH_SIZE, DEFAULT_SEED, STAGE, heatmap_job
from .views import VIEWS, view_angle


# --------------------------------------------------------------------------- stage 3
def _exam_jobs(exam, image_dir, use_hdf5, strides, report, bar):
    """The exam's :class:`heatmaps.HeatmapJob` s, each image read and its strides drawn
    when the stream reaches it; failures go to ``report`` (module docstring)."""
    for view in VIEWS:
        for list_index, name in enumerate(exam[view]):
            path = formats.image_path(image_dir, name, use_hdf5)
            try:
                raw = formats.read_image_file(path)
            except InputImageError as err:
                report.add(name, err)
                _keep_in_step(exam, view, list_index, name, strides)
                bar.update()
                continue
            try:
                job = heatmap_job(raw, strides.image_plan(name, view, raw.shape),
                                  exam["horizontal_flip"], path)
            except InputImageError as err:
                report.add(name, err)
                bar.update()
                continue
            yield job


def _keep_in_step(exam, view, list_index, name, strides):
    """Draw for an image that could not be read what its crop box would have drawn."""
    shape = crop_shape(exam, view, list_index)
    if shape is None:
        log.warning("%s: %s: its size is unknown (no window_location in the exam list), so its "
                    "stride draws are skipped; the strides of later images may differ from a "
                    "run in which it was readable", STAGE, name)
    strides.image_plan(name, view, shape)


def produce_heatmaps(exam_list, image_dir, output_dir, classify_patches, *,
                     batch_size=DEFAULT_BATCH_SIZE, seed=DEFAULT_SEED, use_hdf5=False,
                     report=None, read_ahead=None):
    """Write both heatmaps of every image of ``exam_list`` under ``output_dir``.

    Files: ``output_dir/heatmap_malignant/<short_file_path>.hdf5`` and ``heatmap_benign/``
    (SPEC 3), mirrored back to the stored orientation. ``classify_patches`` is a patch
    runtime; a batch spans the images of one exam, never two (as in the reference).
    Failed images are added to ``report`` (a FailureReport). ``read_ahead``: see
    :func:`engine.exam_heatmaps`. Returns the number of images attempted.
    """
    report = report if report is not None else FailureReport(STAGE)
    strides = StrideStream(seed)
    total = sum(1 for _ in iter_images(exam_list))
    image_bar = progress(total=total, desc="heatmaps", unit="image")

    def save(job, *maps):
        write_exam_heatmaps(output_dir, job, maps)
        image_bar.update()

    for exam_index, exam in enumerate(exam_list):
        with progress(desc=f"exam {exam_index} patches", unit="patch", leave=False) as bar:
            jobs = _counted(_exam_jobs(exam, image_dir, use_hdf5, strides, report, image_bar),
                            bar)
            exam_heatmaps(classify_patches, jobs, batch_size, save, read_ahead, bar)
    image_bar.close()
    return total


def _counted(jobs, bar):
    """Pass jobs through, adding each one's patches to the progress bar's total."""
    for job in jobs:
        bar.total = (bar.total or 0) + job.grid.num_patches
        bar.refresh()
        yield job


def run_producer(model_path, data_path, image_path, output_heatmap_path, *,
                 batch_size=DEFAULT_BATCH_SIZE, seed=DEFAULT_SEED, device_type="cpu",
                 gpu_number=0, use_hdf5=False, overwrite=False, trust_checkpoint=False,
                 runtime="auto", precision="fp32"):
    """The ``run_producer.py`` command: heatmaps of an exam list into a fresh folder.

    The folder is built in a staging folder and moved into place when the run ends, so it
    never mixes two runs. The device is resolved once, by ``load_patch_runtime`` (which on
    the CPU with ONNX Runtime never imports PyTorch). Returns the exit status (0, 3 or 1).
    """
    from .patch_runtime import load_patch_runtime

    exam_list = load_exam_list(data_path)
    report = FailureReport(STAGE)
    with formats.staged_output_dir(output_heatmap_path, overwrite) as stage_dir:
        classify_patches = load_patch_runtime(model_path, device_type, gpu_number,
                                              trust_checkpoint, runtime, precision)
        total = produce_heatmaps(exam_list, image_path, stage_dir, classify_patches,
                                 batch_size=batch_size, seed=seed, use_hdf5=use_hdf5,
                                 report=report)
    report.write(output_heatmap_path)
    return report.exit_code(total)


# --------------------------------------------------------------------------- stage 4
def classify_exams(exam_list, model, image_dir, heatmaps_dir, settings, device, report,
                   batching=None):
    """Predictions for every exam, in order: a (4,) float32 array, or ``None`` if it failed.

    The draws come from the plan (``plan.window_draws``: one stream over the whole list,
    drawn exam by exam);
    each exam runs through :func:`engine.predict_exam`. ``batching``: a
    :class:`classify.DeviceBatching` (default: the device's), whose ``prefetch_depth``
    exams are also read ahead. Failures are added to ``report`` (a :class:`FailureReport`).
    """
    batching = batching or classify.DeviceBatching.for_device(device)
    draws = window_draws(exam_list, settings.seed, settings.num_epochs,
                         settings.use_augmentation)
    predictions = []
    with ThreadPoolExecutor(max(1, batching.view_threads), "views") as pool, \
            closing(prefetch(_read_exams(exam_list, image_dir, heatmaps_dir, settings,
                                         pool.map), batching.prefetch_depth)) as exams:
        for index, inputs in progress(exams, total=len(exam_list), desc="Classifying",
                                      unit="exam"):
            exam_draws = next(draws)  # drawn for a failed exam too: the stream stays in step
            if isinstance(inputs, InputImageError):
                report.add(f"exam {index} ({exam_names(exam_list[index])})", inputs)
                predictions.append(None)
                continue
            predictions.append(predict_exam(model, inputs, exam_list[index]["best_center"],
                                            exam_draws, settings, device, batching, pool.map))
            del inputs
    return predictions


def _read_exams(exam_list, image_dir, heatmaps_dir, settings, map_views):
    """``(index, inputs)`` per exam, or ``(index, InputImageError)`` for one that cannot be read."""
    for index, exam in enumerate(exam_list):
        try:
            yield index, classify.read_exam_inputs(exam, image_dir, heatmaps_dir, settings,
                                                   map_views)
        except InputImageError as err:
            yield index, err


def _check_exam_list_ready(exam_list, data_path):
    for index, exam in enumerate(exam_list):
        if "best_center" not in exam:
            raise ExamListError(f"{data_path}: exam {index} has no 'best_center'; run "
                                "stage 2 (src/optimal_centers/get_optimal_centers.py) first")


def run_model(model_path, data_path, image_dir, output_path, settings, heatmaps_dir=None,
              device_type="cpu", gpu_number=0, overwrite=False, trust_checkpoint=False):
    """Stage 4 over an exam list: write the predictions CSV; return the exit status (0/1/3)."""
    import torch

    from .checkpoints.classifier import load_classifier
    from .runtime import check_precision, resolve_device

    settings.check()
    if settings.use_heatmaps and heatmaps_dir is None:
        raise PipelineError("--use-heatmaps needs --heatmaps-path")
    formats.check_output_file(output_path, overwrite)
    exam_list = load_exam_list(data_path)
    _check_exam_list_ready(exam_list, data_path)
    device = resolve_device(device_type, gpu_number)
    check_precision(settings.precision, device)  # before the model is loaded
    heap_for_classifiers()
    model = load_classifier(model_path, settings.model_mode, settings.channels,
                            trust=trust_checkpoint, device=device)
    model = model.to(memory_format=torch.channels_last)
    report = FailureReport(classify.STAGE)
    predictions = classify_exams(exam_list, model, image_dir, heatmaps_dir, settings, device,
                                 report)
    formats.write_predictions_csv(output_path, predictions)
    report.write(output_path)
    log.info("%s: wrote %s (%d exam(s))", classify.STAGE, output_path, len(predictions))
    return report.exit_code(len(exam_list))


# --------------------------------------------------------------------------- single image
def run_producer_single(model_path, cropped_mammogram_path, metadata_path,
                        heatmap_path_malignant, heatmap_path_benign, *,
                        batch_size=DEFAULT_BATCH_SIZE, seed=DEFAULT_SEED, device_type="cpu",
                        gpu_number=0, proper_mirroring=False, overwrite=False,
                        trust_checkpoint=False, runtime="auto", precision="fp32",
                        load_classify=None):
    """The ``run_producer_single.py`` command. Returns exit status 0 (errors raise).

    ``load_classify(model_path, device_type, gpu_number, trust)`` replaces the PyTorch patch
    runtime by another one (the TF port's), after the same checks."""
    from .exam_list import load_metadata
    from .patch_runtime import load_patch_runtime
    from .single import single_image_heatmaps
    from .stages.heatmaps import write_heatmaps

    metadata = load_metadata(metadata_path)
    paths = (heatmap_path_malignant, heatmap_path_benign)
    for path in paths:
        formats.check_output_file(path, overwrite)
    if load_classify is None:
        classify_patches = load_patch_runtime(model_path, device_type, gpu_number,
                                              trust_checkpoint, runtime, precision)
    else:
        classify_patches = load_classify(model_path, device_type, gpu_number, trust_checkpoint)
    raw = formats.read_image_file(cropped_mammogram_path)
    maps = single_image_heatmaps(classify_patches, raw, metadata, cropped_mammogram_path,
                                 batch_size=batch_size, seed=seed,
                                 proper_mirroring=proper_mirroring)
    write_heatmaps(paths, maps)
    return 0


def run_model_single(model_path, view, cropped_mammogram_path, metadata_path, settings,
                     heatmap_paths=None, device_type="cpu", gpu_number=0,
                     trust_checkpoint=False, batching=None, load_model=None):
    """The single-image classifier of SPEC 9; returns the ``{"benign", "malignant"}`` dict.

    ``heatmap_paths`` = ``(malignant_path, benign_path)`` with ``settings.use_heatmaps``.
    The image and heatmaps are mirrored with the metadata's ``full_view``, the model is
    chosen by ``view``; the two must agree. ``batching``: see
    :func:`single.classify_single_image`. ``load_model(model_path, view, channels, trust,
    device)`` replaces the PyTorch model by another runtime taking and returning the same
    tensors (the TensorFlow port).
    """
    from .exam_list import load_metadata
    from .runtime import check_precision, resolve_device
    from .single import classify_single_image, load_single_classifier

    settings.check()
    metadata = load_metadata(metadata_path)
    if metadata["full_view"] != view:
        raise ExamListError(f"{metadata_path}: metadata is for view {metadata['full_view']!r} "
                            f"but --view is {view!r}")
    if "best_center" not in metadata:
        raise ExamListError(f"{metadata_path}: no 'best_center'; run the centers step first")
    if settings.use_heatmaps and heatmap_paths is None:
        raise PipelineError("--use-heatmaps needs --heatmap-path-malignant and "
                            "--heatmap-path-benign")
    joint = classify.read_joint_array(cropped_mammogram_path, view, metadata["horizontal_flip"],
                                      heatmap_paths if settings.use_heatmaps else None)
    device = resolve_device(device_type, gpu_number)
    check_precision(settings.precision, device)
    heap_for_classifiers()
    loader = load_model or load_single_classifier
    model = loader(model_path, view, settings.channels, trust_checkpoint, device)
    return classify_single_image(model, joint, metadata["best_center"], view_angle(view),
                                 settings, device, batching)
