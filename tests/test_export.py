"""bcc export (tools/export.py, tools/export_networks.py, commands/export.py).

One export of every network to ONNX and ``.pt2`` on the parity kit's weights and synth_a
exam (classifier windows at 1/8 of their size, to keep the test short) is shared by the
tests; the SavedModel format runs once, on one of the two Keras ports.
"""

import csv
import sys

import numpy as np
import pytest
import torch

from breast_cancer_classifier.commands import export as export_command
from breast_cancer_classifier.core.errors import SettingsError
from breast_cancer_classifier.tools import export, export_networks as nets, tf_port
from helpers import run_script
from conftest import parity_case

WINDOW_SCALE = "0.125"
KIT_WEIGHTS = {"--patch-model-path": "patch.p", "--image-model-path": "image_split.p",
               "--imageheatmaps-model-path": "imageheatmaps_split.p",
               "--image-mode-model-path": "image_mode.p",
               "--imageheatmaps-mode-model-path": "imageheatmaps_mode.p"}


def kit_args(weights, case, **replace):
    """Command-line flags: the kit's five weight files (``replace`` swaps some) and exam a0."""
    args = []
    for flag, name in KIT_WEIGHTS.items():
        args += [flag, str(replace.get(flag, weights / name))]
    return args + ["--check-exam", str(case / "images" / "a0"),
                   "--check-heatmaps", str(case / "expected" / "heatmaps"),
                   "--window-scale", WINDOW_SCALE]


def read_checks(folder):
    with open(folder / export.CHECKS_CSV, newline="") as f:
        return {(row["network"], row["format"]): row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def kit():
    case = parity_case("synth_a")
    return case.parent / "weights", case


@pytest.fixture(scope="module")
def exported(kit, tmp_path_factory):
    """Every network to ONNX and .pt2, checked by the tool: (folder, process)."""
    weights, case = kit
    folder = tmp_path_factory.mktemp("exported")
    proc = run_script("utilities/export_models.py", "--output-dir", folder,
                      "--formats", "onnx,pt2", *kit_args(weights, case))
    return folder, proc


def test_every_network_exports_and_matches_pytorch(exported):
    folder, proc = exported
    assert proc.returncode == 0, proc.stderr
    checks = read_checks(folder)
    assert set(checks) == {(n, f) for n in nets.NETWORKS for f in ("onnx", "pt2")}
    for (network, fmt), row in checks.items():
        tolerance = 1e-5 if network == "patch" else 1e-4
        assert float(row["tolerance"]) == tolerance
        assert row["status"] == "ok"
        assert 0 <= float(row["max_abs_diff"]) <= tolerance, (network, fmt, row)
        assert (folder / row["file"]).is_file()
        line = next(l for l in proc.stdout.splitlines() if l.split()[:2] == [network, fmt])
        assert "ok" in line and row["file"] in line
    # Nothing but the exports and the table: no temporary files left behind.
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [row["file"] for row in checks.values()] + [export.CHECKS_CSV])


def test_onnx_patch_file_in_onnx_runtime_matches_the_pytorch_model(exported, kit):
    """Independent of the tool's own check: ONNX Runtime on another batch size than the
    traced and checked ones, against the patch classifier's softmax in PyTorch."""
    import onnxruntime as ort

    from breast_cancer_classifier.core.checkpoints.patch import load_patch_classifier

    folder, _ = exported
    weights, case = kit
    session = ort.InferenceSession(str(folder / "patch.onnx"),
                                   providers=["CPUExecutionProvider"])
    (given,), (out,) = session.get_inputs(), session.get_outputs()
    assert (given.name, out.name) == ("patches", "probabilities")
    assert isinstance(given.shape[0], str) and given.shape[1:] == [3, 256, 256]
    exam = nets.read_check_exam(case / "images" / "a0")
    patches = nets.check_patches(exam, count=3)
    got = session.run(None, {"patches": patches})[0]
    model = load_patch_classifier(weights / "patch.p")
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(patches)), dim=1).numpy()
    assert got.shape == (3, 4)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.allclose(got.sum(axis=1), 1, atol=1e-6)


def test_onnx_view_split_has_four_named_inputs_and_two_outputs(exported):
    import onnxruntime as ort

    folder, _ = exported
    session = ort.InferenceSession(str(folder / "view_split_heatmaps.onnx"),
                                   providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert list(inputs) == ["L_CC", "R_CC", "L_MLO", "R_MLO"]
    assert inputs["L_CC"][1:] == [3, 335, 243] and inputs["L_MLO"][1:] == [3, 372, 218]
    assert [o.name for o in session.get_outputs()] == ["CC_log_probs", "MLO_log_probs"]


def test_pt2_program_runs_another_batch_size_as_the_module(exported, kit):
    from breast_cancer_classifier.core.checkpoints.classifier import load_single_image_model

    folder, _ = exported
    weights, case = kit
    program = torch.export.load(str(folder / "single_image_heatmaps.pt2")).module()
    exam = nets.read_check_exam(case / "images" / "a0", case / "expected" / "heatmaps")
    window = nets.view_window(exam, "L-CC", 3, float(WINDOW_SCALE))
    batch = torch.from_numpy(np.concatenate([window, window[:, :, ::-1], -window]))
    model = load_single_image_model(weights / "imageheatmaps_mode.p", "L-CC", 3)
    with torch.inference_mode():
        expected = model(batch)
    (got,) = program(batch)
    assert got.shape == (3, 2, 2)
    assert torch.allclose(got, expected, rtol=0, atol=1e-6)


def test_tolerance_below_the_measured_difference_removes_that_export(exported, kit, tmp_path,
                                                                     capsys):
    folder, _ = exported
    weights, case = kit
    measured = float(read_checks(folder)["single_image", "onnx"]["max_abs_diff"])
    assert measured > 0  # ONNX Runtime's kernels never sum as PyTorch's do
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as done:
        export_command.main(["--output-dir", str(out), "--networks", "single_image",
                            "--formats", "onnx,pt2", *kit_args(weights, case),
                            "--classifier-tolerance", str(measured / 2)])
    assert done.value.code == 3
    err = capsys.readouterr().err
    assert "FAILED single_image onnx" in err and "over the tolerance" in err
    assert sorted(p.name for p in out.iterdir()) == [export.CHECKS_CSV, "single_image.pt2"]
    row = read_checks(out)["single_image", "onnx"]
    assert row["file"] == "" and "removed" in row["status"]
    assert float(row["max_abs_diff"]) == pytest.approx(measured, rel=1e-3)


@pytest.mark.parametrize("networks, flag, words", [
    ("single_image,patch", "--patch-model-path", "DenseNet-121"),
    ("single_image_heatmaps,single_image", "--image-mode-model-path", "image-mode checkpoint"),
])
def test_checkpoint_of_the_wrong_kind_fails_before_any_file(kit, tmp_path, capsys, networks,
                                                            flag, words):
    """The wrong file comes after a good one: still nothing is written."""
    weights, case = kit
    wrong = weights / "image_split.p"
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as done:
        export_command.main(["--output-dir", str(out), "--networks", networks, "--formats",
                            "onnx", *kit_args(weights, case, **{flag: wrong})])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert str(wrong) in err and words in err
    assert not out.exists()


def test_existing_output_is_refused_without_overwrite(kit, tmp_path):
    weights, case = kit
    (tmp_path / "patch.pt2").write_bytes(b"old")
    proc = run_script("utilities/export_models.py", "--output-dir", tmp_path, "--networks",
                      "patch", "--formats", "pt2", *kit_args(weights, case))
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert (tmp_path / "patch.pt2").read_bytes() == b"old"


def test_savedmodel_asked_for_without_the_tf_port_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "breast_cancer_classifier.tools.tf_port", None)
    with pytest.raises(SystemExit) as done:
        export_command.main(["--output-dir", str(tmp_path), "--networks", "patch",
                            "--formats", "savedmodel"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "savedmodel" in err and "pip install 'breast-cancer-classifier[tf]'" in err
    assert not any(tmp_path.iterdir())


def test_savedmodel_of_a_keras_port_matches_pytorch(kit, tmp_path):
    """The SavedModel format end to end through the tool (the TF port's own round trip of
    both networks is in test_tf_port); the 3-channel single-image network keeps it short."""
    if not tf_port.tensorflow_available():
        pytest.skip("the savedmodel format needs TensorFlow (pip install '.[tf]')")
    weights, case = kit
    proc = run_script("utilities/export_models.py", "--output-dir", tmp_path / "out",
                      "--networks", "single_image_heatmaps", "--formats", "savedmodel",
                      *kit_args(weights, case))
    assert proc.returncode == 0, proc.stderr
    row = read_checks(tmp_path / "out")[("single_image_heatmaps", "savedmodel")]
    assert row["status"] == "ok" and float(row["tolerance"]) == 1e-4
    assert 0 <= float(row["max_abs_diff"]) <= 1e-4
    assert (tmp_path / "out" / row["file"] / "saved_model.pb").is_file()


def test_savedmodel_only_for_the_keras_ports():
    planned = export.plan_exports(["patch", "view_split", "single_image_heatmaps"],
                                  export.FORMATS)
    assert [(n.name, f) for n, f in planned] == [
        ("patch", "onnx"), ("patch", "pt2"), ("patch", "savedmodel"),
        ("view_split", "onnx"), ("view_split", "pt2"),
        ("single_image_heatmaps", "onnx"), ("single_image_heatmaps", "pt2"),
        ("single_image_heatmaps", "savedmodel")]
    with pytest.raises(SettingsError, match="Keras ports"):
        export.export_all("unused", export.ExportSettings(), ["view_split"], ["savedmodel"])
    with pytest.raises(SettingsError, match="unknown network"):
        export.export_all("unused", export.ExportSettings(), ["densenet"], ["onnx"])


def test_check_exam_paths_and_signatures():
    paths = nets.exam_paths("sample_data/images/0")
    assert [p.name for p in paths.values()] == ["0_L_CC.png", "0_R_CC.png", "0_L_MLO.png",
                                                "0_R_MLO.png"]
    view_split, image = nets.NETWORKS["view_split"], nets.NETWORKS["image_heatmaps"]
    assert nets.output_names(view_split) == ("CC_log_probs", "MLO_log_probs")
    assert nets.output_names(image)[0] == "L_CC_log_probs"
    assert nets.scaled_window_size("R-MLO", 0.5) == (1487, 874)
    with pytest.raises(SettingsError, match="window scale"):
        nets.scaled_window_size("L-CC", 0)
