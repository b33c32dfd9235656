"""The house rules that keep the project one piece: declared dependencies match, the phases never import
each other, and the analysis needs neither torch, nor OpenCV, nor the Hub client."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]


def requirement_lines() -> set[str]:
    lines = set()
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-e"):
            lines.add(line.replace(" ", ""))
    return lines


def test_requirements_match_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    assert requirement_lines() == declared


def imported_modules(package: str) -> dict[str, set[str]]:
    """Top-level package names each module of `package` imports."""
    found = {}
    for path in (REPO / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


@pytest.mark.parametrize(("package", "forbidden"), [("fisheye", "VJEPA"), ("VJEPA", "fisheye")])
def test_the_phases_never_import_each_other(package: str, forbidden: str) -> None:
    offenders = [path for path, names in imported_modules(package).items() if forbidden in names]
    assert offenders == []


def test_the_shared_core_imports_no_phase() -> None:
    """Only egoclean/run.py (the whole flow) and egoclean/scale.py (the same flow as engine stages, for
    many workers) stand above both phases."""
    offenders = [
        path
        for path, names in imported_modules("egoclean").items()
        if names & {"fisheye", "VJEPA"} and not path.endswith(("run.py", "scale.py", "__main__.py"))
    ]
    assert offenders == []


def test_every_third_party_import_is_declared() -> None:
    declared = {
        line.split("=")[0].split(">")[0].split("<")[0].split("[")[0].lower() for line in requirement_lines()
    }
    import_names = {
        "cv2": "opencv-python-headless",
        "av": "av",
        "dotenv": "python-dotenv",
        "PIL": "pillow",
        "yaml": "pyyaml",
    }
    stdlib = set(sys.stdlib_module_names)
    ours = {"egoclean", "fisheye", "VJEPA", "tests", "__future__"}
    used = set().union(
        *(names for pkg in ("egoclean", "fisheye", "VJEPA") for names in imported_modules(pkg).values())
    )
    missing = {
        name
        for name in used - stdlib - ours
        if import_names.get(name, name).lower().replace("_", "-")
        not in {d.replace("_", "-") for d in declared}
    }
    assert missing == set()


def loaded_by(modules: str, names: set[str]) -> str:
    """Which of `names` a fresh interpreter has loaded after importing `modules` (a comma list)."""
    code = f"import sys, {modules}; print(sorted(set({sorted(names)!r}) & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_analysis_imports_neither_torch_nor_cv2_nor_the_hub_client() -> None:
    heavy = {"torch", "cv2", "huggingface_hub", "transformers"}
    assert loaded_by("VJEPA.analyze, VJEPA.structure, VJEPA.plots", heavy) == "[]"


def test_the_local_engine_never_imports_ray() -> None:
    """`bash run.sh` and `--engine local` load the scale-out code but never Ray (nor pyarrow)."""
    assert loaded_by("egoclean.run, egoclean.scale, egoclean.engine", {"ray", "pyarrow"}) == "[]"
