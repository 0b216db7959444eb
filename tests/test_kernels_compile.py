"""Every kernel file compiles, without a GPU: nvcc --ptx for sm_80 and sm_90,
and NVRTC (what CuPy runs at run time) on the include-expanded source."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ecmpi import _kernels

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"


def _have_nvrtc() -> bool:
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception:
        return False
    return True


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found (no CUDA toolkit)")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("name", _kernels.KERNEL_FILES)
def test_nvcc_ptx(name, arch, tmp_path):
    out = tmp_path / f"{name}.ptx"
    cmd = [
        "nvcc",
        "--ptx",
        f"-arch={arch}",
        *_kernels.OPTIONS,
        "-I",
        str(KERNELS),
        str(KERNELS / name),
        "-o",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name} ({arch}):\n{proc.stderr}"
    assert ".visible .entry" in out.read_text()


@pytest.mark.skipif(
    not _have_nvrtc(), reason="NVRTC unavailable (install cupy-cuda12x and nvidia-cuda-nvrtc-cu12)"
)
@pytest.mark.parametrize("name", _kernels.KERNEL_FILES)
def test_nvrtc_expanded_source(name):
    ptx = _kernels.nvrtc_ptx(name, "compute_90")
    assert ".visible .entry" in ptx


def test_nvrtc_reports_errors_with_log(monkeypatch):
    if not _have_nvrtc():
        pytest.skip("NVRTC unavailable")
    monkeypatch.setattr(_kernels, "source", lambda name: 'extern "C" __global__ void f() { x; }')
    with pytest.raises(_kernels.KernelCompileError, match=r"kernels/topk.cu[\s\S]*identifier"):
        _kernels.nvrtc_ptx("topk.cu")


def test_source_expands_includes_once():
    for name in _kernels.KERNEL_FILES:
        src = _kernels.source(name)
        assert '#include "' not in src
        assert src.count("ECMPI_HD void ec_philox4x32_10") == 1


def test_unknown_kernel_file_is_rejected():
    with pytest.raises(ValueError, match="unknown kernel file"):
        _kernels.get_module("nope.cu")
