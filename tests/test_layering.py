"""The package layering the code relies on, read from the sources (every import, also inside functions).

searchspace/ knows choices and costs, supernet/ knows modules, nas/ orchestrates: imports go one way. The Ray
Train launcher takes the worker function it runs, so it imports neither trainer (issue #10, item 6).
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def package_imports(package: str) -> dict[str, set[str]]:
    return {str(p.relative_to(ROOT)): imported_modules(p) for p in sorted((ROOT / package).rglob("*.py"))}


def test_imports_find_what_they_should():  # the reader itself: a test that cannot fail would be no test
    assert "nas.raysession" in imported_modules(ROOT / "nas" / "distributed.py")
    assert "torch" in imported_modules(ROOT / "supernet" / "mixers.py")


@pytest.mark.parametrize("package, forbidden", [
    ("searchspace", ("torch", "ray", "optuna", "supernet", "nas")),
    ("supernet", ("ray", "optuna", "nas")),
])
def test_lower_packages_never_import_upper_ones(package, forbidden):
    for path, names in package_imports(package).items():
        bad = sorted(n for n in names if n.split(".")[0] in forbidden)
        assert not bad, f"{path} imports {bad}"


def test_the_ray_train_launcher_imports_no_trainer():
    names = imported_modules(ROOT / "nas" / "distributed.py")
    assert not {"nas.supernet_train", "nas.retrain", "nas.jobs"} & names
    assert not {n for n in names if n.startswith(("nas.supernet_train", "nas.retrain"))}
