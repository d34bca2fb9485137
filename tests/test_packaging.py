"""The project as an installed package: a wheel with every subpackage and a working ``bcc``
command, and declared dependencies that cover what the code imports.

The wheel is built from a copy of the sources (so that no build/ or *.egg-info lands in the
checkout) with ``pip wheel --no-deps --no-build-isolation --no-index`` and installed, again
without dependencies or an index, into a fresh virtual environment in a temporary folder.
That environment reuses the packages of the interpreter running the tests through a ``.pth``
file (torch and the rest are not downloaded again), listed after its own site-packages so
that ``breast_cancer_classifier`` comes from the wheel. The commands run from a folder
outside the checkout, without PYTHONPATH, so nothing can be picked up from the sources.
"""

import ast
import importlib.metadata
import os
import re
import shutil
import site
import socket
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "breast_cancer_classifier"
SUBCOMMANDS = ("run", "single", "demo", "dicom", "exam-list", "visualize", "evaluate",
               "download", "demo-weights")
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def _pyproject():
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _run(cmd, cwd, env=None, timeout=300):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _check(result, what):
    assert result.returncode == 0, (f"{what} exited {result.returncode}\n--- stdout\n"
                                    f"{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}")
    return result


def _parent_site_dirs():
    """The site-packages folders of the running interpreter (where torch & co. are)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        dirs.append(site.getusersitepackages())
    # and those that .pth files there add (a virtual environment layered on another one)
    dirs += [d for d in sys.path if Path(d).name in ("site-packages", "dist-packages")]
    return [d for d in dict.fromkeys(dirs) if Path(d).is_dir() and Path(d).resolve() != REPO]


class Installed:
    """A temporary virtual environment holding the project's wheel."""

    def __init__(self, root, venv):
        self.root, self.venv = root, venv
        bindir = "Scripts" if os.name == "nt" else "bin"
        suffix = ".exe" if os.name == "nt" else ""
        self.python = venv / bindir / f"python{suffix}"
        self.bcc = venv / bindir / f"bcc{suffix}"
        self.cwd = root / "elsewhere"  # not the checkout: nothing importable from there
        self.cwd.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
        self.env["PYTHONNOUSERSITE"] = "1"  # the user site, if used, is in the .pth already

    def run(self, *args, timeout=300):
        return _run(args, self.cwd, self.env, timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("installed")
    src = root / "src"
    src.mkdir()
    shutil.copytree(REPO / PACKAGE, src / PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in [REPO / "pyproject.toml", *REPO.glob("LICENSE*"), *REPO.glob("README*")]:
        shutil.copy2(path, src / path.name)

    dist = root / "dist"
    _check(_run(PIP + ["wheel", "--no-deps", "--no-build-isolation", "--no-index",
                       "--wheel-dir", dist, src], root), "pip wheel")
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels

    venv = root / "venv"
    _check(_run([sys.executable, "-m", "venv", "--without-pip", venv], root), "python -m venv")
    installed = Installed(root, venv)
    purelib = _run([installed.python, "-c",
                    "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   root, installed.env)
    purelib = Path(_check(purelib, "venv python").stdout.strip())
    # Path lines of a .pth are appended after the venv's own site-packages: the wheel's
    # breast_cancer_classifier is found first, torch & co. (and pip) in the parent's.
    (purelib / "_bcc_test_parent_site.pth").write_text(
        "".join(f"{d}\n" for d in _parent_site_dirs()))
    # --ignore-installed: an (editable) install of the project in the parent environment,
    # visible through the .pth, is neither taken as "already satisfied" nor uninstalled.
    _check(installed.run(installed.python, "-m", "pip", "--disable-pip-version-check",
                         "install", "--no-deps", "--no-index", "--ignore-installed",
                         wheels[0]), "pip install (wheel)")
    return installed


def test_wheel_installs_every_subpackage(installed):
    """The installed modules, core/ and tools/ included, come from the venv, not the sources."""
    modules = [PACKAGE, f"{PACKAGE}.cli", f"{PACKAGE}.core.exam_list",
               f"{PACKAGE}.core.stages.cropping", f"{PACKAGE}.core.checkpoints.patch",
               f"{PACKAGE}.tools.demo_weights"]
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    print(importlib.import_module(name).__file__)\n")
    files = _check(installed.run(installed.python, "-c", code, *modules),
                   "importing the installed package").stdout.split()
    assert len(files) == len(modules)
    venv = installed.venv.resolve()
    for name, file in zip(modules, files):
        assert venv in Path(file).resolve().parents, f"{name} imported from {file}, not the venv"
    # Every package of the sources the wheel was built from (copied when the fixture ran).
    src = installed.root / "src"
    expected = {p.parent.relative_to(src).as_posix().replace("/", ".")
                for p in (src / PACKAGE).rglob("__init__.py")}
    assert {PACKAGE, f"{PACKAGE}.core", f"{PACKAGE}.tools"} <= expected
    found = _check(installed.run(installed.python, "-c",
                                 "import importlib.metadata as m; print('\\n'.join(str(f) for f"
                                 f" in m.files('breast-cancer-classifier')))"),
                   "listing the wheel's files").stdout.split()
    packages = {f.rsplit("/", 1)[0].replace("/", ".") for f in found
                if f.endswith("/__init__.py")}
    assert expected <= packages, f"packages missing from the wheel: {sorted(expected - packages)}"
    assert f"{PACKAGE}/tools/official_files.tsv" in found, "bcc download's list is not in the wheel"
    assert f"{PACKAGE}/core/native_kernels.c" in found, "stage 3's kernel source is not in the wheel"


def test_installed_bcc_help(installed):
    assert installed.bcc.is_file(), f"{installed.bcc} not installed ([project.scripts])"
    top = _check(installed.run(installed.bcc, "--help"), "bcc --help")
    missing = [name for name in SUBCOMMANDS if name not in top.stdout]
    assert not missing, f"bcc --help does not name {missing}:\n{top.stdout}"
    run = _check(installed.run(installed.bcc, "run", "--help"), "bcc run --help")
    for flag in ("--exam-list", "--data-folder", "--output-dir"):
        assert flag in run.stdout, f"bcc run --help does not name {flag}:\n{run.stdout}"


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# `pip install` alone: in an empty folder, with $BCC_HOME as the only setting, the installed
# commands find their file list (package data), write demo weights to $BCC_HOME/models, run
# the whole pipeline on a generated sample exam (one exam, one epoch: the cheapest demo), and
# `bcc run` without weight flags finds the same weights there.
def test_installed_demo_from_an_empty_folder(installed, tmp_path):
    from breast_cancer_classifier.core.views import LABELS
    from breast_cancer_classifier.tools.evaluate import load_predictions

    empty = tmp_path / "empty"
    empty.mkdir()
    bcc_home = tmp_path / "bcc_home"
    env = dict(installed.env, BCC_HOME=str(bcc_home), BCC_NO_PROGRESS="1")
    env.pop("BCC_DOWNLOAD_BASE_URL", None)

    def bcc(*args, timeout=300):
        return _run([installed.bcc, *args], empty, env, timeout)

    assert "usage: bcc download" in _check(bcc("download", "--help"), "bcc download --help").stdout
    # No network here: the download must fail for that reason only, its list read from the
    # wheel and its files bound for $BCC_HOME/models.
    offline = bcc("download", "--base-url", f"http://127.0.0.1:{_closed_port()}/raw",
                  "--timeout", "5")
    assert offline.returncode == 1, offline.stderr
    assert "network seems unreachable" in offline.stderr, offline.stderr
    assert str(bcc_home / "models" / "sample_patch_model.p") in offline.stderr

    weights = _check(bcc("demo-weights", timeout=900), "bcc demo-weights")
    assert f"models folder {bcc_home / 'models'} ($BCC_HOME)" in weights.stderr
    assert (bcc_home / "models" / "DEMO_WEIGHTS.txt").is_file()

    demo = _check(bcc("demo", "--num-exams", "1", "--num-epochs", "1", "--device-type", "cpu",
                      "--num-processes", "1", timeout=1800), "bcc demo")
    out = empty / "bcc_demo" / "output"
    assert "DEMO WEIGHTS (untrained)" in demo.stdout and str(out) in demo.stdout
    assert "kernels are unavailable" not in demo.stderr, demo.stderr  # stage 3 ran compiled
    csvs = {name: (out / name).read_bytes()
            for name in ("image_predictions.csv", "imageheatmaps_predictions.csv")}
    for name in csvs:
        predictions = load_predictions(out / name, expected_rows=1, source="the demo")
        assert predictions.shape == (1, len(LABELS))
        assert ((predictions >= 0) & (predictions <= 1)).all(), f"{name}: {predictions}"
        assert f"predictions: {out / name}" in demo.stdout

    # Without weight flags `bcc run` takes $BCC_HOME/models: the demo's run continues with
    # the same weights (another file would change weights_sha256 and be refused, exit 2).
    sample = empty / "bcc_demo" / "sample_data"
    _check(bcc("run", "--continue", "--exam-list", sample / "exam_list_before_cropping.pkl",
               "--data-folder", sample / "images", "--output-dir", out, "--num-epochs", "1",
               "--device-type", "cpu", "--num-processes", "1", timeout=600),
           "bcc run --continue without weight flags")
    assert {name: (out / name).read_bytes() for name in csvs} == csvs
    assert sorted(p.name for p in empty.iterdir()) == ["bcc_demo"]


# --------------------------------------------------------------------------- dependencies
def _normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement):
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"cannot read a project name from {requirement!r}"
    return _normalize(match.group(1))


def _declared():
    project = _pyproject()["project"]
    names = {_requirement_name(r) for r in project.get("dependencies", [])}
    for extra in project.get("optional-dependencies", {}).values():
        names |= {_requirement_name(r) for r in extra}
    return names


def _imported_top_levels():
    """{top-level module name: [file:line, ...]} of every absolute import in the package,
    including imports inside functions and ``importlib.import_module("...")`` calls."""
    found = {}
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            elif (isinstance(node, ast.Call) and node.args
                  and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)
                  and ((isinstance(node.func, ast.Attribute)
                        and node.func.attr == "import_module")
                       or (isinstance(node.func, ast.Name)
                           and node.func.id in ("import_module", "__import__")))
                  and not node.args[0].value.startswith(".")):
                names = [node.args[0].value]
            for name in names:
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                found.setdefault(name.split(".")[0], []).append(where)
    return found


def test_declared_dependencies_cover_the_imports():
    if not hasattr(sys, "stdlib_module_names"):
        pytest.skip("sys.stdlib_module_names and packages_distributions need Python 3.10")
    declared = _declared()
    providers = importlib.metadata.packages_distributions()
    third_party = {name: where for name, where in _imported_top_levels().items()
                   if name not in sys.stdlib_module_names and name != PACKAGE}
    assert {"torch", "numpy", "cv2"} <= set(third_party), sorted(third_party)
    problems = []
    for name, where in sorted(third_party.items()):
        dists = {_normalize(d) for d in providers.get(name, ())}
        if not dists:
            problems.append(f"{name} (imported at {where[0]}) is not installed, so its "
                            "distribution is unknown")
        elif not dists & declared:
            problems.append(f"{name} (imported at {where[0]}) comes from "
                            f"{', '.join(sorted(dists))}, not declared in pyproject.toml")
    assert not problems, "\n".join(problems)


def _requirement_lines(name):
    lines = [line.split("#", 1)[0].strip() for line in (REPO / name).read_text().splitlines()]
    return [line for line in lines if line]


def test_requirements_txt_mirrors_pyproject():
    """requirements.txt (what `make` installs) = [project] dependencies + the `test` extra +
    the build backend; requirements-extras.txt (what `make test` adds) = the other extras;
    the same lower bounds as pyproject.toml."""
    project = _pyproject()
    extras = dict(project["project"].get("optional-dependencies", {}))
    declared = list(project["project"]["dependencies"]) + extras.pop("test")
    build = project["build-system"]["requires"]
    heavy = [req for extra in extras.values() for req in extra]

    def spec(req):
        return _requirement_name(req), re.sub(r"\s+", "", req[re.match(
            r"\s*[A-Za-z0-9][A-Za-z0-9._-]*", req).end():])

    assert sorted(map(spec, _requirement_lines("requirements.txt"))) == sorted(
        map(spec, declared + build))
    assert sorted(map(spec, _requirement_lines("requirements-extras.txt"))) == sorted(
        map(spec, heavy))
    assert "ray" in {_requirement_name(r) for r in heavy}
    assert "pytest" not in {_requirement_name(r) for r in project["project"]["dependencies"]}
    scripts = project["project"]["scripts"]
    assert scripts == {"bcc": "breast_cancer_classifier.bcc:main"}
