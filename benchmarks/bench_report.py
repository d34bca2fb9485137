"""``bcc report`` at cohort scale: build time, size, and the page's load time in Chromium.

    python benchmarks/bench_report.py [--exams 10000] [--workdir DIR] [--keep]

Writes a synthetic finished run of ``--exams`` labelled exams (tests/synthetic_run.py: the
project's writers, tiny crops and heatmaps, a ``bcc dicom`` report with the acquisition
columns beside the exam list, an ``--attributes`` CSV), then times ``bcc report`` (a fresh
process, imports included) with the default ``--pictures`` and with ``--pictures all``, and
opens each report in headless Chromium (selenium, Debian's chromium + chromium-driver):
the Navigation Timing of index.html, the moment the first table rows are in the page (the
script's ``bcc-table-rendered`` mark), and the time to sort every row by a probability.
Targets (issue 24): built in under 60 s, first screen in under 2 s. Prints a table.
"""

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from breast_cancer_classifier.tools.report import DEFAULT_PICTURES  # noqa: E402
from synthetic_run import write_synthetic_run  # noqa: E402

CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000")


def machine():
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").is_file() else platform.processor()
    return f"{model}, {os.cpu_count()} CPU(s), Python {platform.python_version()}"


def build(cohort_dir, out, *extra):
    """(wall seconds, CPU seconds of it and its processes) of ``bcc report`` in a fresh
    process, into a new folder."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, BCC_NO_PROGRESS="1", PYTHONPATH=str(REPO))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "breast_cancer_classifier.bcc", "report",
                    str(cohort_dir / "run"), "--output", str(out),
                    "--labels", str(cohort_dir / "labels.csv"),
                    "--attributes", str(cohort_dir / "attributes.csv"), *extra],
                   check=True, env=env, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def size(folder):
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def page_timings(report):
    """(first screen ms, load event ms, sort ms) of index.html in headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    profile = tempfile.mkdtemp(prefix="bench-chrome-")
    for flag in CHROME_FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get((Path(report) / "index.html").as_uri())
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return performance.getEntriesByName('bcc-table-rendered').length > 0 && "
            "performance.getEntriesByType('navigation')[0].loadEventEnd > 0"))
        first, load = driver.execute_script(
            "return [performance.getEntriesByName('bcc-table-rendered')[0].startTime, "
            "performance.getEntriesByType('navigation')[0].loadEventEnd]")
        driver.find_element("css selector",
                            'th[data-key="imageheatmaps_left_malignant"]').click()
        sort = driver.execute_script("return window.bccTimings.lastSortMs")
        return first, load, sort
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", type=int, default=10000)
    parser.add_argument("--workdir", help="folder for the run and reports (default: temporary)")
    parser.add_argument("--keep", action="store_true",
                        help="keep (and reuse) the synthetic run in --workdir")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-report-"))
    cohort_dir = work / f"cohort_{args.exams}"
    start = time.perf_counter()
    if args.keep and (cohort_dir / "run" / "imageheatmaps_predictions.csv").is_file():
        made = "reused"
    else:
        shutil.rmtree(cohort_dir, ignore_errors=True)
        write_synthetic_run(cohort_dir, args.exams, crop_shape=(48, 32))
        made = f"{time.perf_counter() - start:.0f} s"
    rows = []
    for name, extra in ((f"default ({DEFAULT_PICTURES})", ()), ("all", ("--pictures", "all"))):
        out = work / f"report_{name.split()[0]}"
        wall, cpu = build(cohort_dir, out, *extra)
        total, count = size(out)
        first, load, sort = page_timings(out)
        rows.append((name, wall, cpu, total / 2 ** 20, count, first, load, sort))
    load_average = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nbcc report on a synthetic run of {args.exams} labelled exams "
          f"(48 x 32 crops; run written: {made})")
    print(f"machine: {machine()}; load average at the end {load_average}")
    print("| --pictures | build wall (s) | build CPU (s) | size (MiB) | files | first rows (ms) "
          "| load event (ms) | sort all rows (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, wall, cpu, mib, count, first, load, sort in rows:
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {mib:.1f} | {count} | {first:.0f} "
              f"| {load:.0f} | {sort:.0f} |")
    print("targets: build < 60 s, first screen < 2000 ms")
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
