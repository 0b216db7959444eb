"""The example scripts: short, each states its command, none copies an experiment, they run."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: the one example that builds its own run (the minimal API demo) may name a dataset
API_DEMO = "run_ef_sgd.py"
#: launches its ranks itself on an emulated cluster (root), not under mpiexec
SELF_LAUNCHED = ("netns_study.py",)


def _ids(paths):
    return [p.name for p in paths]


def test_there_are_examples():
    assert API_DEMO in _ids(EXAMPLES) and "experiment.py" in _ids(EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_short_with_a_docstring_stating_its_command(path):
    text = path.read_text()
    assert len(text.splitlines()) < 80, f"{path.name}: an example stays under 80 lines"
    doc = ast.get_docstring(ast.parse(text))
    assert doc, f"{path.name} has no docstring"
    assert f"python examples/{path.name}" in doc, f"{path.name}: docstring without its command"
    # the MPI job is stated: the example runs under mpiexec, or it reads the logs of an
    # ``ecmpi reproduce`` run (which launches its ranks) shown in the docstring first
    if path.name not in SELF_LAUNCHED:
        runs = re.search(r"mpiexec -n \d+ python examples/\S+\.py", doc)
        reads = re.search(
            r"ecmpi reproduce \S+ .*--out (\S+)\n\s+python examples/\S+\.py --logs \1", doc
        )
        assert runs or reads, path.name


@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_importable_without_running(path):
    spec = importlib.util.spec_from_file_location(f"_example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # main() runs only under __main__
    assert callable(module.main)


@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_no_example_defines_an_experiment_setting(path):
    """Settings live in ecmpi.experiments; examples pick them (or demo one run)."""
    text = path.read_text()
    if path.name != API_DEMO:
        assert not re.search(r"--dataset|dataset=|--problem|problem=", text), path.name
    assert "ecmpi.cli" not in text and "_common" not in text, path.name
    assert "flags(" not in text and "Run(" not in text, path.name


def test_docs_name_only_existing_examples():
    names = set(_ids(EXAMPLES))
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for name in re.findall(r"examples/(\w+\.py)", doc.read_text()):
            assert name in names, f"{doc.relative_to(ROOT)} names examples/{name}"


def _mpiexec(n: int, *args: str, cwd: Path) -> str:
    exe = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if exe is None:
        pytest.fail("mpiexec not found")
    cmd = [exe, "-n", str(n), sys.executable, *args]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res.stdout


@pytest.mark.mpi
def test_api_demo_runs_on_two_ranks(tmp_path):
    out = _mpiexec(
        2, str(ROOT / "examples" / API_DEMO), "--steps", "6", "--out", "r.h5", cwd=tmp_path
    )
    assert "ef-sgd" in out and (tmp_path / "r.h5").is_file()


@pytest.mark.mpi
def test_an_experiment_runs_through_the_python_api(tmp_path):
    """examples/experiment.py: every run of dqgd's quick setting, the table, the figure."""
    from ecmpi.experiments import get_experiment

    args = ["dqgd", "--quick", "--max-steps", "3", "--out", "logs"]
    out = _mpiexec(2, str(ROOT / "examples" / "experiment.py"), *args, cwd=tmp_path)
    runs = get_experiment("dqgd").quick.runs
    assert sorted(p.stem for p in (tmp_path / "logs").glob("*.h5")) == sorted(r.name for r in runs)
    assert (tmp_path / "logs" / "dqgd.png").read_bytes()[:4] == b"\x89PNG"
    assert "| dqgd" in out and "| qgd" in out
