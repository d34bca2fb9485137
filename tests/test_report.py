"""``bcc report``: the report folder of a run, its numbers, bad input, and the page in Chromium.

The run is synthetic (tests/synthetic_run.py: the project's writers, no model), labelled, with
a ``bcc dicom`` report beside its exam list and an ``--attributes`` CSV. The subgroup AUCs
are checked against scikit-learn's ``roc_auc_score`` on each subgroup's breasts, and their
intervals against ``evaluate.bootstrap_intervals`` on the subgroup's exams. The browser
test opens the report from ``file://`` in Debian's headless Chromium through selenium.
"""

import csv
import json
import os
import re
import shutil
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from breast_cancer_classifier.commands import report as command
from breast_cancer_classifier.core.views import LABELS
from breast_cancer_classifier.tools import evaluate
from breast_cancer_classifier.tools.report import attributes, build_report, subgroups
from breast_cancer_classifier.tools.report.labels import run_labels
from breast_cancer_classifier.tools.report.run_folder import demo_status, read_run

from helpers import debian_tool
from synthetic_run import write_synthetic_run

N_EXAMS, N_BOOTSTRAP = 40, 300
TARGET_COLUMNS = {"malignant": ("left_malignant", "right_malignant"),
                  "benign": ("left_benign", "right_benign")}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("report") / "cohort", N_EXAMS,
                               crop_shape=(120, 90))


@pytest.fixture(scope="module")
def report(synthetic):
    """The report with labels, attributes and the DICOM report found beside the exam list."""
    out = synthetic.root.parent / "report"
    status = build_report(synthetic.root, out, labels=synthetic.labels_path,
                          attributes=synthetic.attributes_path, n_bootstrap=N_BOOTSTRAP)
    assert status == 0
    return out


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cli(*args):
    """``bcc report`` in this process; returns its exit status."""
    with pytest.raises(SystemExit) as exit_info:
        command.main([str(a) for a in args])
    return exit_info.value.code


# --------------------------------------------------------------------------- numbers
def test_subgroup_aucs_match_scikit_learn_and_evaluate_bootstrap(report, synthetic):
    exams = read_csv(report / "exams.csv")
    rows = read_csv(report / "subgroups.csv")
    assert list(rows[0]) == list(subgroups.COLUMNS)
    assert {r["attribute"] for r in rows} >= {"all", "view_set", "qa", "manufacturer",
                                              "manufacturer_model", "kvp", "exposure_mas",
                                              "site"}
    checked = 0
    for row in rows:
        pred = synthetic.predictions[row["model"]]
        members = np.array([row["attribute"] == "all" or e[f"{row['attribute']}"] == row["value"]
                            for e in exams])
        members &= ~np.isnan(pred).any(axis=1)
        columns = [LABELS.index(c) for c in TARGET_COLUMNS[row["label"]]]
        y = np.concatenate([synthetic.labels[members, c] for c in columns])
        s = np.concatenate([pred[members, c] for c in columns])
        assert int(row["exams"]) == members.sum()
        assert int(row["positives"]) == y.sum()
        if len(set(y)) < 2:
            assert row["auc"] == row["ci_low"] == row["ci_high"] == ""
            continue
        assert float(row["auc"]) == pytest.approx(roc_auc_score(y, s), abs=5e-7)
        ci = evaluate.bootstrap_intervals(pred[members], synthetic.labels[members],
                                          [row["label"]], N_BOOTSTRAP, evaluate.SEED)
        low, high = ci[row["label"]]["roc_auc"]
        assert (float(row["ci_low"]), float(row["ci_high"])) == (
            pytest.approx(low, abs=5e-7), pytest.approx(high, abs=5e-7))
        checked += 1
    assert checked > 20


def test_exam_table_holds_the_run_the_labels_and_the_attributes(report, synthetic):
    exams = read_csv(report / "exams.csv")
    assert [int(e["exam"]) for e in exams] == list(range(N_EXAMS))
    for model, values in synthetic.predictions.items():
        got = np.array([[float(e[f"{model}_{c}"]) if e[f"{model}_{c}"] else np.nan
                         for c in LABELS] for e in exams])
        np.testing.assert_array_equal(got, values)
    assert [e["manufacturer"] for e in exams] == synthetic.manufacturer
    assert [e["site"] for e in exams] == synthetic.site
    assert [[int(e[c]) for c in LABELS] for e in exams] == synthetic.labels.astype(int).tolist()
    failed = [int(e["exam"]) for e in exams if e["failed"]]
    assert failed == synthetic.failed and exams[failed[0]]["failed"] == "classify"
    assert "missing_view" in exams[failed[0]]["qa_flags"].split(";")
    assert exams[0]["view_set"] == "4 views, 4 images"
    assert exams[failed[0]]["view_set"] == "3 views (no R-MLO), 3 images"
    data = (report / "data" / "exams.js").read_text()
    table = json.loads(data[data.index("=") + 1:data.rindex(";")])
    assert len(table["rows"]) == N_EXAMS and "missing_view" in table["flags"]


def test_report_files_and_no_outside_reference(report):
    for name in ("index.html", "qa.html", "exams.csv", "subgroups.csv", "summary.json",
                 "assets/report.css", "assets/report.js", "data/exams.js", "thumbs/0.jpg",
                 "figures/roc_imageheatmaps.png", "figures/reliability_image_malignant.png",
                 "figures/subgroups_image.png", f"exams/{N_EXAMS - 1}.html"):
        assert (report / name).is_file(), name
    for path in report.rglob("*"):
        if path.suffix in (".html", ".js", ".css"):
            text = path.read_text()
            assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), path
            assert "XMLHttpRequest" not in text and "fetch(" not in text, path
    index = (report / "index.html").read_text()
    assert 'id="demo-banner"' in index
    assert 'href="qa.html#missing_view"' in index
    qa_page = (report / "qa.html").read_text()
    assert '<h3 id="missing_view">' in qa_page and '<h3 id="eight_bit">' in qa_page


def test_quartile_bins_and_few_values():
    values = attributes.bin_numeric([1, 2, 3, 4, 5, 6, 7, 8, float("nan")])
    assert values[-1] == attributes.UNKNOWN
    assert values[:8] == ["Q1 [1, 2.75)"] * 2 + ["Q2 [2.75, 4.5)"] * 2 + \
        ["Q3 [4.5, 6.25)"] * 2 + ["Q4 [6.25, 8]"] * 2
    assert attributes.bin_numeric([28, 28, 30, 30]) == ["28", "28", "30", "30"]


def test_subgroup_marks_and_notes():
    rng = np.random.default_rng(0)
    n = 120
    labels = np.zeros((n, 4))
    labels[:, 2:] = rng.random((n, 2)) < 0.3
    good = np.where(labels == 1, 0.8, 0.2) + rng.normal(0, 0.05, (n, 4))
    good[:40] = rng.random((40, 4))  # group "noise": no skill
    group = ["noise"] * 40 + ["fine"] * 70 + ["tiny"] * 10
    labels[110:, 2:] = 0
    labels[110, 2] = 1  # group "tiny": one positive breast
    rows = subgroups.subgroup_results({"image": good}, labels, {"g": group}, n_bootstrap=200)
    by = {(r["value"], r["label"]): r for r in rows}
    assert by[("noise", "malignant")]["below"]
    assert "below" in by[("noise", "malignant")]["note"]
    assert not by[("fine", "malignant")]["below"]
    assert by[("tiny", "malignant")]["note"].startswith("too small to judge")
    assert by[("tiny", "benign")]["auc"] is None
    assert by[("tiny", "benign")]["note"] == "too small for an AUC: no positive breast"


def test_demo_status(tmp_path, synthetic):
    settings = json.loads((synthetic.root / "run_settings.json").read_text())
    assert set(demo_status(settings).values()) == {"demo"}
    plain = tmp_path / "plain.p"
    plain.write_bytes(b"x")
    status = demo_status({"weights": {"image": str(plain), "patch": str(tmp_path / "gone.p")}})
    assert status == {"image": "not demo", "patch": "unknown"}


# --------------------------------------------------------------------------- bad input
def test_not_a_finished_run_exits_2_naming_what_is_missing(tmp_path, synthetic, capsys):
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("run_settings.json", "run_manifest.jsonl", "data.pkl"):
        shutil.copy(synthetic.root / name, partial / name)
    assert cli(partial) == 2
    error = capsys.readouterr().err
    assert "image_predictions.csv" in error and "imageheatmaps_predictions.csv" in error
    assert "--continue" in error
    assert cli(tmp_path / "nothing") == 2
    assert "no such folder" in capsys.readouterr().err


def test_unknown_exams_are_listed(tmp_path, synthetic, report):
    run = read_run(synthetic.root)
    labels = tmp_path / "labels.csv"
    rows = [[str(e), *map(str, synthetic.labels[e].astype(int))] for e in range(1, N_EXAMS)]
    rows.append(["97", "0", "0", "1", "0"])
    with open(labels, "w", newline="") as f:
        csv.writer(f).writerows([["exam_index", *LABELS], *rows])
    values, _, warnings = run_labels(run, labels)
    assert np.isnan(values[0]).all()
    np.testing.assert_array_equal(values[1:], synthetic.labels[1:])
    assert [w.split(": ", 1)[1] for w in warnings] == [
        f"labels for 1 exam(s) the run does not have (it has {N_EXAMS}, 0-{N_EXAMS - 1}), "
        "left out: 97", "1 exam(s) have no labels and are left out of the results: 0"]
    extra = tmp_path / "attributes.csv"
    extra.write_text("exam_index,site,left_benign\n0,north,1\n98,south,0\n")
    found, _, warnings = attributes.exam_attributes(run, extra)
    assert found["site"] == ["north"] + [attributes.UNKNOWN] * (N_EXAMS - 1)
    assert "left_benign" not in found
    assert any("98" in w and "does not have" in w for w in warnings)
    assert any("stranger" in w for w in warnings)  # the DICOM report's image of no exam
    summary = json.loads((report / "summary.json").read_text())
    assert any("stranger" in w for w in summary["warnings"])


def test_existing_report_refused_or_replaced(synthetic, report, tmp_path):
    assert cli(synthetic.root, "--output", report, "--pictures", "0") == 2
    out = tmp_path / "again"
    assert cli(synthetic.root, "--output", out, "--pictures", "0", "--n-bootstrap", "0") == 0
    assert cli(synthetic.root, "--output", out, "--pictures", "0", "--n-bootstrap", "0",
               "--overwrite") == 0
    # never the run folder, a part of it, or a folder that is not a report
    assert cli(synthetic.root, "--output", synthetic.root, "--overwrite") == 2
    assert cli(synthetic.root, "--output", synthetic.root / "heatmaps", "--overwrite") == 2
    assert cli(synthetic.root, "--output", tmp_path, "--overwrite") == 2
    assert (synthetic.root / "data.pkl").is_file() and (synthetic.root / "heatmaps").is_dir()


def test_run_without_labels_and_a_bounded_number_of_pictures(tmp_path, synthetic):
    out = tmp_path / "plain"
    assert build_report(synthetic.root, out, pictures=3) == 0
    assert not (out / "subgroups.csv").exists()
    assert "No labels" in (out / "index.html").read_text()
    score = np.fmax(*(synthetic.predictions["imageheatmaps"][:, LABELS.index(c)]
                      for c in ("left_malignant", "right_malignant")))
    top = sorted(np.argsort(-np.nan_to_num(score, nan=-1), kind="stable")[:3].tolist())
    assert sorted(int(p.stem) for p in (out / "thumbs").iterdir()) == top
    drawn = [e["picture"] for e in read_csv(out / "exams.csv")]
    assert drawn.count("drawn") == 3 and drawn.count("not drawn") == N_EXAMS - 3


# --------------------------------------------------------------------------- browser
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1000")


def _descendants(pid):
    """Live (not zombie) processes below ``pid``, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = debian_tool("chromium", "chromium")
    driver_path = debian_tool("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS + (f"--user-data-dir={tmp_path_factory.mktemp('chrome')}",):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    service_pid = driver.service.process.pid
    started = [service_pid] + _descendants(service_pid)
    try:
        yield driver
    finally:
        driver.quit()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in started if _alive(p)], "browser processes left running"


def _console_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _all_images_loaded(driver):
    """Scroll every image into view, wait for it, and return those that did not load."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        (async () => {
          for (const img of Array.from(document.images)) {
            img.scrollIntoView();
            for (let i = 0; i < 100 && !img.complete; i++) {
              await new Promise(r => setTimeout(r, 50));
            }
          }
          done(Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
               .map(i => i.getAttribute("src")));
        })();""")


def _table_exams(driver):
    return [int(tr.get_attribute("data-exam"))
            for tr in driver.find_elements("css selector", "#exam-table tbody tr")]


def test_report_in_chromium(browser, report, synthetic):
    from PIL import Image
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.set_script_timeout(60)
    browser.get((report / "index.html").as_uri())
    WebDriverWait(browser, 20).until(lambda d: _table_exams(d))
    assert _table_exams(browser) == list(range(N_EXAMS))
    assert _all_images_loaded(browser) == []
    assert browser.find_elements("id", "demo-banner")

    browser.find_element("css selector", 'th[data-key="imageheatmaps_left_malignant"]').click()
    scores = synthetic.predictions["imageheatmaps"][:, LABELS.index("left_malignant")]
    expected = sorted(range(N_EXAMS), key=lambda e: (np.isnan(scores[e]), -np.nan_to_num(
        scores[e]), e))
    assert _table_exams(browser) == expected != list(range(N_EXAMS))

    Select(browser.find_element("css selector", "select.filter")).select_by_value("missing_view")
    assert _table_exams(browser) == synthetic.failed
    image = np.asarray(Image.open(BytesIO(browser.get_screenshot_as_png())).convert("L"))
    assert image.std() > 20  # not a blank page
    assert _console_errors(browser) == []

    first = browser.find_element("css selector", "#exam-table tbody tr a")
    first.click()
    WebDriverWait(browser, 20).until(lambda d: d.title.startswith("Exam"))
    assert browser.title == f"Exam {synthetic.failed[0]}"
    assert _all_images_loaded(browser) == []
    assert len(browser.find_elements("css selector", "figure.pictures img")) == 3
    assert _console_errors(browser) == []


def test_pictures_that_cannot_be_drawn_exit_3(tmp_path):
    small = write_synthetic_run(tmp_path / "small", 4, crop_shape=(60, 40), missing_view=())
    for path in (small.root / "cropped_images").glob("e1_*.png"):
        path.unlink()  # exam 1 finished in the run, but its crops are gone
    out = tmp_path / "report"
    assert build_report(small.root, out, n_bootstrap=0) == 3
    pictures = [e["picture"] for e in read_csv(out / "exams.csv")]
    assert pictures == ["drawn", "failed", "drawn", "drawn"]
    assert "e1_L_CC.png: image file not found" in (out / "exams" / "1.html").read_text()
