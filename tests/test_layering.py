"""The package layout the code relies on, read from the sources (every import, also inside functions).

searchspace/ knows choices and costs, supernet/ knows modules, nas/ orchestrates: imports go one way. Inside nas/,
each sub-package has one role (issue #43): the typed settings and run files import no torch, so a command refuses a
bad flag before its heavy imports; only the cluster and search packages (and the trainers that run under Ray) reach
Ray; the Ray Train launcher takes the worker function it runs, so it imports neither trainer (issue #10, item 6).
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# nas/'s sub-packages and modules, each with one job; a new one is added here with its role in nas/*/__init__.py.
NAS_LAYOUT = {"cli", "cluster", "data", "latency", "ranking", "runs", "search", "train",
              "errors.py", "settings.py", "hub.py", "export.py", "__init__.py"}


def imported_modules(path: Path) -> set[str]:
    """Every import of a module, also those inside its functions."""
    return imported_modules_of(ast.walk(ast.parse(path.read_text())))


def top_level_imports(path: Path) -> set[str]:
    """The imports a module runs when it is imported (not those inside its functions)."""
    return imported_modules_of(ast.parse(path.read_text()).body)


def imported_modules_of(nodes) -> set[str]:
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def package_imports(package: str) -> dict[str, set[str]]:
    return {str(p.relative_to(ROOT)): imported_modules(p) for p in sorted((ROOT / package).rglob("*.py"))}


def test_imports_find_what_they_should():  # the reader itself: a test that cannot fail would be no test
    assert "nas.cluster.session" in imported_modules(ROOT / "nas" / "cluster" / "train.py")
    assert "torch" in imported_modules(ROOT / "supernet" / "mixers.py")


@pytest.mark.parametrize("package, forbidden", [
    ("searchspace", ("torch", "ray", "optuna", "supernet", "nas")),
    ("supernet", ("ray", "optuna", "nas")),
    ("nas/runs", ("ray", "optuna")),   # torch only in runs/checkpoint.py, below
    ("nas/data", ("ray", "optuna")),
    ("nas/latency", ("ray", "optuna")),
])
def test_lower_packages_never_import_upper_ones(package, forbidden):
    for path, names in package_imports(package).items():
        bad = sorted(n for n in names if n.split(".")[0] in forbidden)
        assert not bad, f"{path} imports {bad}"


def test_nas_holds_only_its_named_packages():
    found = {p.name for p in (ROOT / "nas").iterdir() if p.name != "__pycache__"}
    assert found == NAS_LAYOUT, f"unexpected: {sorted(found - NAS_LAYOUT)}, missing: {sorted(NAS_LAYOUT - found)}"
    for package in (p for p in (ROOT / "nas").iterdir() if p.is_dir() and p.name != "__pycache__"):
        init = package / "__init__.py"
        assert init.exists() and ast.get_docstring(ast.parse(init.read_text())), f"{init}: say what the package does"
        # a package's __init__ imports nothing (but the command line's, which is its entry point): importing one
        # module never drags in its siblings (torch, Ray)
        assert package.name == "cli" or not imported_modules(init) - {"__future__"}, f"{init} imports"


@pytest.mark.parametrize("path", ["nas/settings.py", "nas/errors.py", "nas/runs/layout.py", "nas/runs/record.py",
                                  "nas/runs/migrate.py", "nas/ranking/arch_sets.py", "nas/cli/__init__.py",
                                  "nas/cli/common.py", "nas/cli/train_args.py"])
def test_what_a_command_checks_first_imports_no_torch(path):
    # (a function may import torch where it needs it: only with --gpu, say)
    heavy_roots = ("torch", "ray", "optuna", "timm", "supernet")
    seen, todo = set(), [path]
    while todo:
        current = todo.pop()
        names = top_level_imports(ROOT / current)
        heavy = sorted(n for n in names if n.split(".")[0] in heavy_roots)
        assert not heavy, f"{path}: {current} imports {heavy} when imported"
        for name in names:
            module = name.replace(".", "/") + ".py"
            if name.startswith("nas.") and (ROOT / module).exists() and module not in seen:
                seen.add(module)
                todo.append(module)


def test_ray_is_reached_only_from_the_packages_that_run_on_it():
    allowed = ("nas/cluster/", "nas/search/", "nas/train/parallel.py", "nas/ranking/check.py", "nas/cli/")
    for path, names in package_imports("nas").items():
        if any(n.split(".")[0] == "ray" for n in names):
            assert path.startswith(allowed), f"{path} imports Ray"


def test_the_ray_train_launcher_imports_no_trainer():
    names = imported_modules(ROOT / "nas" / "cluster" / "train.py")
    assert not {n for n in names if n.startswith(("nas.train.supernet", "nas.train.retrain"))}


def test_benchmarks_import_the_product_and_never_the_tests():
    for path, names in package_imports("benchmarks").items():
        bad = sorted(n for n in names if n.split(".")[0] == "tests")
        assert not bad, f"{path} imports {bad}"


def test_test_modules_share_through_helpers_not_through_each_other():
    # a fixture or constant another module needs lives in conftest.py or a helper module, not in a test module
    for path, names in package_imports("tests").items():
        bad = sorted(n for n in names if n.startswith("tests.") and n.split(".")[-1].startswith("test_"))
        assert not bad, f"{path} imports {bad}"


def storage_calls(path: Path) -> list[str]:
    """The calls of a storage's folder transfers (``<x>.push(...)``, ``<x>.pull(...)``, its Ray storage) in a module."""
    methods = {"push", "pull", "ray_storage"}
    return sorted(f"{path.relative_to(ROOT)}:{node.lineno} .{node.func.attr}()"
                  for node in ast.walk(ast.parse(path.read_text()))
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in methods
                  and "storage" in ast.unparse(node.func.value))


def test_only_the_run_object_moves_files_to_and_from_the_storage():
    # issue #50 item 1: a command opens its run, and what it writes reaches the storage through the run, not through
    # a push at each call site. Reads of one file a user names or a run recorded (file_path, localize, pulled,
    # latest_run) stay the storage's own.
    assert storage_calls(ROOT / "nas" / "runs" / "run.py")  # the reader itself finds them where they are
    calls = [c for p in sorted((ROOT / "nas").rglob("*.py")) if p.parent.name != "runs" for c in storage_calls(p)]
    assert not calls, calls
