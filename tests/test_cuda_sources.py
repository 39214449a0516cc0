"""The raw CUDA sources in kernels/ compile with nvcc (compile only: no GPU is needed).

At run time CuPy compiles these files with NVRTC for the GPU it finds; here nvcc checks them
ahead of time for the architectures minigen targets, so a syntax or type error shows up in CI
on a machine without a GPU. Skipped, with the reason, where nvcc is not installed.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import minigen.kernels

KERNEL_DIR = Path(minigen.kernels.__file__).parent
SOURCES = sorted(KERNEL_DIR.glob("**/*.cu"))
NVCC = shutil.which("nvcc") or (os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc")
                                if os.environ.get("CUDA_HOME") else None)
# sm_80: A100, sm_90: H100/H200 (the GPU the project is benchmarked on).
ARCHS = ("sm_80", "sm_90")


def test_there_are_cuda_sources():
    assert SOURCES, f"no .cu files under {KERNEL_DIR}"


@pytest.mark.skipif(NVCC is None or not os.path.exists(NVCC),
                    reason="nvcc not found (install the CUDA toolkit or set CUDA_HOME): "
                           "the CUDA sources were not compiled")
@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
@pytest.mark.parametrize("arch", ARCHS)
def test_cuda_source_compiles(source, arch, tmp_path):
    out = tmp_path / (source.stem + ".o")
    cmd = [NVCC, "-c", "-x", "cu", "-std=c++17", f"-arch={arch}", "-Werror", "all-warnings",
           "-o", str(out), str(source)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    assert out.stat().st_size > 0
