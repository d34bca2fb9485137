"""The package's shape, read from the source (nothing is imported): no import cycles, core/
independent of tools/ and of the command-line modules, no module named like a standard-library
module, and every exception class in core/errors.py.

Imports are collected from the whole syntax tree of each module, so those inside functions
(lazy imports of torch, say) count as much as those at the top.
"""

import ast
import builtins
import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "breast_cancer_classifier"
PACKAGE_DIR = REPO / PACKAGE
CORE = f"{PACKAGE}.core"
ERRORS_MODULE = f"{PACKAGE}.core.errors"


def _module_name(path):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _load_modules():
    """{dotted module name: (path, ast tree)} for every .py file of the package."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        modules[_module_name(path)] = (path, ast.parse(path.read_text(encoding="utf-8"),
                                                       filename=str(path)))
    return modules


MODULES = _load_modules()


def _is_package(name):
    return MODULES[name][0].name == "__init__.py"


def _resolve_from(module, node):
    """The absolute module a ``from ... import`` statement of ``module`` names."""
    if node.level == 0:
        return node.module
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    if node.level > 1:
        base = base[:-(node.level - 1)]
    assert base, f"{MODULES[module][0]}:{node.lineno}: relative import beyond the top package"
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module):
    """[(lineno, imported absolute name)] of every import anywhere in ``module``.

    ``from M import n`` gives ``M.n`` when that is a module of the package (``from . import
    formats``), else ``M``. Names outside the package are given as written.
    """
    found = []
    for node in ast.walk(MODULES[module][1]):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve_from(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if sub in MODULES else target))
    return found


def _internal(name):
    """The package module ``name`` refers to (its longest prefix that is one), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def import_graph():
    """{module: {imported package module: first line importing it}}."""
    graph = {}
    for module in MODULES:
        edges = graph.setdefault(module, {})
        for lineno, name in imports_of(module):
            target = _internal(name) if name.split(".")[0] == PACKAGE else None
            if target and target != module:
                edges.setdefault(target, lineno)
    return graph


def find_cycle(graph):
    """One import cycle as [m0, m1, ..., m0], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def _describe_cycle(graph, cycle):
    return "\n  ".join(f"{a} (line {graph[a][b]}) imports {b}" for a, b in zip(cycle, cycle[1:]))


# --------------------------------------------------------------------------- the tests
def test_package_modules_are_found():
    for expected in (PACKAGE, CORE, ERRORS_MODULE, f"{PACKAGE}.tools", f"{PACKAGE}.cli",
                     f"{CORE}.stages", f"{CORE}.checkpoints"):
        assert expected in MODULES, f"{expected} not found under {PACKAGE_DIR}"


def test_find_cycle_reports_a_cycle():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 2, "b": 3}}) is None


def test_no_import_cycles():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle inside the package:\n  " + _describe_cycle(graph, cycle)


def test_core_imports_nothing_outside_core():
    """core/ stands alone: no tools/, no bcc or cli (nor any other module outside core/);
    importing the top package itself (its ``__init__``) is allowed."""
    bad = []
    for module in MODULES:
        if module != CORE and not module.startswith(CORE + "."):
            continue
        for lineno, name in imports_of(module):
            target = _internal(name) if name.split(".")[0] == PACKAGE else None
            if target is None or target == PACKAGE:
                continue
            if target != CORE and not target.startswith(CORE + "."):
                bad.append(f"{MODULES[module][0].relative_to(REPO)}:{lineno} imports {target}")
    assert not bad, "core/ must not import outside core/:\n  " + "\n  ".join(bad)


def test_no_module_named_like_the_standard_library():
    if not hasattr(sys, "stdlib_module_names"):
        pytest.skip("sys.stdlib_module_names needs Python 3.10")
    clashes = sorted(f"{name} ({MODULES[name][0].relative_to(REPO)})" for name in MODULES
                     if name.rsplit(".", 1)[-1] in sys.stdlib_module_names)
    assert not clashes, "modules named like standard-library modules: " + ", ".join(clashes)


# --------------------------------------------------------------------------- exceptions
def _bindings(module):
    """{name bound in ``module`` by a class statement or an import: absolute dotted name}."""
    names = {}
    for node in ast.walk(MODULES[module][1]):
        if isinstance(node, ast.ClassDef):
            names.setdefault(node.name, f"{module}.{node.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    names[root] = root
        elif isinstance(node, ast.ImportFrom):
            target = _resolve_from(module, node)
            for alias in node.names:
                names[alias.asname or alias.name] = f"{target}.{alias.name}"
    return names


def _dotted(expr):
    """``a.b.C`` of a base-class expression, or None for anything else (a call, say)."""
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        head = _dotted(expr.value)
        return head and f"{head}.{expr.attr}"
    if isinstance(expr, ast.Subscript):  # Generic[...] and the like
        return _dotted(expr.value)
    return None


def _is_exception(qualified, seen=()):
    """Whether the class ``qualified`` (absolute dotted name) derives from BaseException."""
    if qualified in seen:
        return False
    seen = seen + (qualified,)
    module = _internal(qualified) if qualified.split(".")[0] == PACKAGE else None
    if module is not None:
        rest = qualified[len(module) + 1:]
        if not rest:
            return False  # a module, not a class
        head = rest.split(".")[0]
        for node in ast.walk(MODULES[module][1]):
            if isinstance(node, ast.ClassDef) and node.name == head:
                return any(_base_is_exception(module, base, seen) for base in node.bases)
        bound = _bindings(module).get(head)  # re-exported from another module
        return bool(bound) and _is_exception(bound + rest[len(head):], seen)
    # Outside the package: import the longest importable prefix and look the rest up.
    parts = qualified.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
        return isinstance(obj, type) and issubclass(obj, BaseException)
    obj = getattr(builtins, qualified, None)
    return isinstance(obj, type) and issubclass(obj, BaseException)


def _base_is_exception(module, base, seen=()):
    name = _dotted(base)
    if name is None:
        return False
    head, _, rest = name.partition(".")
    bound = _bindings(module).get(head)
    if bound is not None:
        return _is_exception(bound + (f".{rest}" if rest else ""), seen)
    return _is_exception(name, seen)  # a builtin (ValueError, Exception, ...)


def test_exception_resolution_sees_the_known_classes():
    assert _is_exception(f"{ERRORS_MODULE}.PipelineError")
    assert _is_exception(f"{ERRORS_MODULE}.EvaluationInputError")
    assert _is_exception(f"{ERRORS_MODULE}.UnsafePickleError")  # via pickle.UnpicklingError
    assert _is_exception(f"{PACKAGE}.tools.evaluate.EvaluationInputError")  # re-exported
    assert not _is_exception(f"{PACKAGE}.tools.download.OfficialFile")


def test_every_exception_class_is_in_core_errors():
    stray = []
    for module, (path, tree) in MODULES.items():
        if module == ERRORS_MODULE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                    _base_is_exception(module, base) for base in node.bases):
                stray.append(f"{path.relative_to(REPO)}:{node.lineno} class {node.name}")
    assert not stray, ("exception classes belong in core/errors.py (import them from there):"
                       "\n  " + "\n  ".join(stray))


# --------------------------------------------------------------------------- src/ scripts
SCRIPT_MAX_LINES = 15
SCRIPTS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "src").rglob("*.py")
                 if "__pycache__" not in p.parts)


def _thin_script_problems(path):
    """Why ``path`` is not a thin script: more than 15 lines, or anything but imports, a
    ``sys.path`` line and ``if __name__ == "__main__": main()``."""
    text = path.read_text(encoding="utf-8")
    problems = []
    if len(text.splitlines()) > SCRIPT_MAX_LINES:
        problems.append(f"{len(text.splitlines())} lines (at most {SCRIPT_MAX_LINES})")
    for node in ast.parse(text).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.Expr) and ast.unparse(node).startswith("sys.path.insert("):
            continue
        if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'" \
                and [ast.unparse(n) for n in node.body] == ["main()"]:
            continue
        problems.append(f"line {node.lineno}: {ast.unparse(node).splitlines()[0]}")
    return problems


def test_src_scripts_are_found():
    assert {"src/cropping/crop_mammogram.py", "src/utilities/download_files.py"} <= set(SCRIPTS)
    assert {"src/heatmaps/run_producer.py", "src/modeling/run_model_single_tf.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_src_script_only_calls_a_main(script):
    problems = _thin_script_problems(REPO / script)
    assert not problems, f"{script}: " + "; ".join(problems)


def test_thin_script_check_catches_a_parser(tmp_path):
    fat = tmp_path / "fat.py"
    fat.write_text('"""Doc."""\nimport argparse\n\n\ndef main():\n    argparse.ArgumentParser()\n')
    assert _thin_script_problems(fat) == ["line 5: def main():"]
    long = tmp_path / "long.py"
    long.write_text('"""Doc."""\n' + "import os\n" * 20)
    assert _thin_script_problems(long) == ["21 lines (at most 15)"]


# --------------------------------------------------------------------------- random streams
RANDOM_STREAMS = ("random.Random(", "RandomState(")
PLAN_MODULE = f"{CORE}.plan"


def test_only_the_plan_creates_random_streams_in_core():
    """Every random draw of stages 3-4 comes from the streams core/plan.py makes: a second
    stream anywhere in core/ (even one named in a comment) is refused."""
    stray = []
    for module, (path, _) in MODULES.items():
        if module == PLAN_MODULE or not (module == CORE or module.startswith(CORE + ".")):
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            stray += [f"{path.relative_to(REPO)}:{lineno}: {line.strip()}"
                      for name in RANDOM_STREAMS if name in line]
    assert PLAN_MODULE in MODULES and any(
        name in MODULES[PLAN_MODULE][0].read_text() for name in RANDOM_STREAMS)
    assert not stray, "random streams are made in core/plan.py only:\n  " + "\n  ".join(stray)
