"""``bcc demo`` (tools/demo.py, commands/demo.py): what it writes, which weights it takes and
says it took, and the refusal of an earlier demo. The pipeline itself is stood in for here
(``bcc run``'s tests cover it); the real demo from an installed wheel runs in
test_packaging.py."""

import pytest

from breast_cancer_classifier import bcc
from breast_cancer_classifier.core.hashing import git_blob_sha1
from breast_cancer_classifier.core.run_layout import RunLayout
from breast_cancer_classifier.tools import demo, demo_weights
from breast_cancer_classifier.tools.phantoms import EXAM_LIST_NAME


@pytest.fixture
def runs(monkeypatch):
    """Stands in for run_pipeline: records its arguments and writes the two CSVs."""
    calls = []

    def fake_run_pipeline(exam_list_path, data_folder, output_dir, settings, **options):
        calls.append((exam_list_path, data_folder, output_dir, settings, options))
        for path in RunLayout(output_dir).csvs.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("left_benign\n")
        return 0

    monkeypatch.setattr(demo, "run_pipeline", fake_run_pipeline)
    return calls


def fill_models(models, demo_names=()):
    """The five checkpoint names as placeholder files; ``demo_names`` recorded as demo."""
    models.mkdir(parents=True)
    for name in demo_weights.DEMO_FILES:
        (models / name).write_bytes(f"weights {name}".encode())
    demo_weights._write_marker(models, {n: git_blob_sha1(models / n) for n in demo_names},
                               seed=0)


def test_demo_with_demo_weights_says_so(tmp_path, runs, capsys):
    models = tmp_path / "models"
    fill_models(models, demo_names=["sample_image_model.p"])
    with pytest.raises(SystemExit) as exit_info:
        bcc.main(["demo", "--output-dir", str(tmp_path / "d"), "--models-dir", str(models),
                  "--num-exams", "1", "--num-epochs", "1", "--device-type", "cpu"])
    assert exit_info.value.code == 0
    (exam_list, images, out, settings, options), = runs
    sample = tmp_path / "d" / demo.SAMPLE_DIR
    assert (exam_list, images, out) == (sample / EXAM_LIST_NAME, sample / "images",
                                        tmp_path / "d" / demo.RUN_DIR)
    assert sorted(p.name for p in images.iterdir()) == ["0_L_CC.png", "0_L_MLO.png",
                                                        "0_R_CC.png", "0_R_MLO.png"]
    assert settings.weight_paths() == {role: str(models / name)
                                       for role, name in demo.ROLES.items()}
    assert (settings.num_epochs, settings.device_type) == (1, "cpu")
    assert options == {"num_processes": 2, "overwrite": False}
    text = capsys.readouterr().out
    assert text.count("DEMO WEIGHTS (untrained)") == 2
    assert f"image weights: {models / 'sample_image_model.p'} (demo)" in text
    assert f"patch weights: {models / 'sample_patch_model.p'} (other)" in text
    for path in RunLayout(out).csvs.values():
        assert f"predictions: {path}" in text
    readme = tmp_path / "d" / demo.README_NAME
    assert readme.read_text() == (models / demo_weights.MARKER_NAME).read_text()


def test_demo_without_demo_weights_has_no_banner(tmp_path, runs):
    models = tmp_path / "models"
    fill_models(models)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / demo.README_NAME).write_text("left by an earlier demo")
    result = demo.run_demo(tmp_path / "d", models, num_exams=1)
    assert result.status == 0 and not result.demo_weights_used
    assert "DEMO" not in result.summary()
    assert not (tmp_path / "d" / demo.README_NAME).exists()


def test_an_earlier_demo_is_refused_without_overwrite(tmp_path, runs, capsys):
    out = tmp_path / "d" / demo.RUN_DIR
    out.mkdir(parents=True)
    (out / "data.pkl").write_bytes(b"earlier")
    with pytest.raises(SystemExit) as exit_info:
        bcc.main(["demo", "--output-dir", str(tmp_path / "d"), "--models-dir",
                  str(tmp_path / "models")])
    assert exit_info.value.code == 2
    assert "holds an earlier demo run; pass --overwrite" in capsys.readouterr().err
    assert not runs and not (tmp_path / "d" / demo.SAMPLE_DIR).exists()
