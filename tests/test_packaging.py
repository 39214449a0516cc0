"""How minigen is installed: kernels/ becomes the subpackage minigen.kernels, never a top-level
package named `kernels` (which would clash with any other project's `kernels`).

These tests read the installed distribution's metadata (importlib.metadata), so they skip in a
source tree that was never pip-installed. In an editable install the package files are not
copied: the files list holds setuptools' import finder, whose mapping is checked instead.
"""
from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
from pathlib import Path

import pytest


def _distribution():
    """The pip-installed minigen (a .dist-info with a RECORD). The build leaves a
    minigen.egg-info in the project root too, found first when the root is on sys.path; it
    describes the sources, not an installation."""
    for dist in importlib.metadata.distributions(name="minigen"):
        if dist.read_text("RECORD") is not None:
            return dist
    pytest.skip("minigen is not pip-installed (pip install -e .): no metadata to check")


def _editable_mapping(dist) -> dict[str, str] | None:
    """The {package: directory} MAPPING of setuptools' editable finder, if this is one."""
    for f in dist.files or []:
        if f.name.startswith("__editable__") and f.name.endswith("_finder.py"):
            tree = ast.parse(Path(dist.locate_file(f)).read_text(encoding="utf-8"))
            for node in tree.body:  # MAPPING = {...} or MAPPING: dict[str, str] = {...}
                targets = (node.targets if isinstance(node, ast.Assign)
                           else [node.target] if isinstance(node, ast.AnnAssign) else [])
                if any(getattr(t, "id", None) == "MAPPING" for t in targets):
                    return ast.literal_eval(node.value)
    return None


def test_kernels_is_the_subpackage_minigen_kernels():
    dist = _distribution()
    try:
        kernels = importlib.import_module("minigen.kernels")
    except ImportError as exc:
        pytest.skip(f"minigen.kernels not importable here ({exc}): this interpreter imports "
                    "minigen from a source tree, not from the installed distribution "
                    f"{dist.locate_file('')}")
    assert kernels.__name__ == "minigen.kernels"
    assert Path(kernels.__file__).parent.name == "kernels"
    assert "Triton" in (kernels.__doc__ or "")


def test_no_top_level_kernels_package_installed():
    dist = _distribution()
    site = Path(dist.locate_file("")).resolve()
    files = [Path(str(f)) for f in dist.files or []]
    top_level_kernels = [str(f) for f in files if f.parts and f.parts[0] == "kernels"]
    assert top_level_kernels == [], f"installed as top-level `kernels`: {top_level_kernels}"

    top_level = (dist.read_text("top_level.txt") or "").split()
    assert "kernels" not in top_level, top_level

    mapping = _editable_mapping(dist)
    if mapping is not None:
        assert "kernels" not in mapping, mapping
        assert Path(mapping["minigen.kernels"]).name == "kernels"
    else:  # a regular install: minigen/kernels/__init__.py is among the installed files
        assert Path("minigen", "kernels", "__init__.py") in files

    # A top-level `kernels` may still be importable from a source checkout on sys.path (the
    # project root), but never from the install location.
    spec = importlib.util.find_spec("kernels")
    if spec is not None and spec.origin:
        assert site not in Path(spec.origin).resolve().parents, spec.origin


def test_extension_and_console_script_are_declared():
    dist = _distribution()
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts.get("minigen") == "minigen.cli:main"
    assert dist.requires is not None
    runtime = [r for r in dist.requires if "extra ==" not in r]
    assert [r.split(";")[0].strip() for r in runtime] == ["numpy"], runtime
    mapping = _editable_mapping(dist)
    if mapping is None:  # a regular install ships the compiled module inside the package
        assert any(f.parts[:1] == ("minigen",) and f.name.startswith("_C.")
                   for f in map(lambda f: Path(str(f)), dist.files or [])), "no minigen/_C.*"
