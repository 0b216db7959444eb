"""Every test that launches ``mpiexec`` carries the ``mpi`` marker.

``make test-fast`` and ``pytest -m "not mpi"`` rely on the marker to leave MPI
jobs out, so a test that starts one without it would silently slow down (or
hang) a serial run. This is a static check of the test files' source: a test
function launches ``mpiexec`` when it calls, directly or through the module's
own helper functions and fixtures, a function named ``mpiexec``/``_mpiexec``
(the test modules' way of finding the launcher) or :func:`ecmpi.reproduce.reproduce`
without a ``launcher`` (which then finds mpiexec itself). Tests that start MPI
jobs in other ways (an ``ecmpi`` command that launches ranks by itself) are
marked by hand; this check cannot see those.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
#: helper names whose call finds the launcher for a job about to start
LAUNCHER_FINDERS = {"mpiexec", "_mpiexec"}
MARKER = "mpi"

_Function = ast.FunctionDef | ast.AsyncFunctionDef


def _called_names(fn: _Function) -> set[str]:
    """Names this function calls (``f(...)``, ``obj.f(...)``) and fixtures it requests."""
    out = {a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)}
    for node in ast.walk(fn):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name == "reproduce" and not any(k.arg == "launcher" for k in node.keywords):
            out.add("_mpiexec")  # the library finds mpiexec itself
        elif name:
            out.add(name)
    return out


def _has_marker(decorators: list[ast.expr]) -> bool:
    for d in decorators:
        for node in ast.walk(d):
            if isinstance(node, ast.Attribute) and node.attr == MARKER:
                base = node.value
                if isinstance(base, ast.Attribute) and base.attr == "mark":
                    return True
    return False


def _module_marked(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            return _has_marker([node.value])
    return False


def launching_tests(source: str) -> dict[str, bool]:
    """``{test name: has the marker}`` for each test function of ``source`` that launches."""
    tree = ast.parse(source)
    funcs: dict[str, _Function] = {
        n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    calls = {
        name: _called_names(fn) & (set(funcs) | LAUNCHER_FINDERS) for name, fn in funcs.items()
    }
    launching = set(LAUNCHER_FINDERS)
    changed = True
    while changed:  # helpers and fixtures that reach a launcher finder, to a fixed point
        changed = False
        for name, called in calls.items():
            if name not in launching and called & launching:
                launching.add(name)
                changed = True
    marked = _module_marked(tree)
    return {
        name: marked or _has_marker(fn.decorator_list)
        for name, fn in funcs.items()
        if name.startswith("test") and name in launching
    }


def test_the_check_sees_direct_helper_and_fixture_launches():
    src = """
import pytest
def _mpiexec(): return "mpiexec"
def _job(n): return run([_mpiexec(), "-n", str(n)])
@pytest.fixture
def reference(): return _job(2)
def test_direct(): _mpiexec()
@pytest.mark.mpi
def test_helper(): _job(2)
def test_fixture(reference): pass
def test_reproduce(): reproduce(exp, out)
def test_reproduce_with_launcher(): reproduce(exp, out, launcher=["false"])
def test_serial(): pass
"""
    assert launching_tests(src) == {
        "test_direct": False,
        "test_helper": True,
        "test_fixture": False,
        "test_reproduce": False,
    }
    assert all(launching_tests("import pytest\npytestmark = [pytest.mark.mpi]\n" + src).values())


@pytest.mark.parametrize("path", sorted(TESTS.glob("test_*.py")), ids=lambda p: p.name)
def test_every_test_that_launches_mpiexec_is_marked(path):
    unmarked = [t for t, ok in launching_tests(path.read_text()).items() if not ok]
    assert not unmarked, (
        f"{path.name}: {', '.join(unmarked)} launch mpiexec without @pytest.mark.{MARKER}"
    )
