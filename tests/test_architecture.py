"""The layout of DESIGN.md, checked from the source: arrows one way, no cycles, light imports.

`search -> spaces -> residual`, and inside `search` the orchestration -> the trial layer. The
graph is built from the `ast` of every module (imports inside functions included), so a lazy
import against the arrows is caught as well as a top-level one.
"""

import ast
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("residual", "spaces", "search")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _from_module(node: ast.ImportFrom, path: Path, module: str) -> str:
    """The absolute name of the module a `from ... import` in `module` reads from."""
    base = node.module or ""
    if not node.level:
        return base
    package = (module if path.name == "__init__.py" else module.rpartition(".")[0]).split(".")
    return ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))


def _imports(path: Path, module: str) -> set[str]:
    """Project modules `module` imports, resolved to the longest existing module name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _from_module(node, path, module)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    g = nx.DiGraph()
    g.add_nodes_from(files)
    for module, path in files.items():
        for target in _imports(path, module):
            while target not in files and "." in target:  # `from pkg import name`
                target = target.rpartition(".")[0]
            if target in files and target != module:
                g.add_edge(module, target)
    return g


def _layer(module: str) -> int:
    """Lower layers may not import higher ones."""
    if module.startswith("residual"):
        return 0
    if module.startswith("spaces"):
        return 1
    if module.startswith("search.trial"):
        return 2
    return 3  # search's orchestration (and the `search` package itself)


def test_the_graph_covers_every_package(graph):
    assert {"residual.specs", "spaces.space", "search.trial.loop", "search.runner"} <= set(graph)
    assert graph.has_edge("search.trial.loop", "residual.network") or graph.has_edge(
        "search.trial.loop", "residual")


def test_no_import_cycles(graph):
    cycles = list(nx.simple_cycles(graph))
    assert cycles == [], f"import cycles: {cycles[:5]}"


def test_arrows_point_one_way(graph):
    against = [(a, b) for a, b in graph.edges if _layer(a) < _layer(b)]
    assert against == [], f"imports against search -> spaces -> residual: {against}"


def _modules_after_import(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=True)
    return set(done.stdout.split())


def test_the_trial_layer_imports_neither_ray_nor_mlflow():
    loaded = _modules_after_import("import search.trial; from search.trial import run_trial")
    assert "search.trial.loop" in loaded
    assert not {"ray", "mlflow", "optuna"} & loaded


def test_the_models_and_spaces_need_no_torch_to_be_described():
    loaded = _modules_after_import("import residual, spaces; spaces.list_spaces()")
    assert "spaces.builtin" in loaded
    assert not {"torch", "ray", "mlflow"} & loaded


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["list-spaces"]])
def test_the_cli_answers_without_heavy_imports(argv):
    code = ("import sys; from search.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('MODULES', ' '.join(sys.modules))")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    seconds = time.perf_counter() - started
    loaded = set(done.stdout.rpartition("MODULES")[2].split())
    assert done.returncode == 0, done.stderr
    assert not {"torch", "ray", "mlflow", "optuna", "pandas"} & loaded, f"{seconds:.2f} s"


def test_the_trial_contract_imports_neither_torch_ray_nor_mlflow():
    loaded = _modules_after_import(
        "from search.trial.contract import TrialConfig; from search.trial import choose_device")
    assert "search.trial.contract" in loaded
    assert not {"torch", "ray", "mlflow"} & loaded


def test_the_report_path_imports_no_torch():
    loaded = _modules_after_import("import search.report; from search.report import report")
    assert "search.report.core" in loaded
    assert not {"torch", "ray", "mlflow"} & loaded


def test_the_driver_imports_torch_only_to_stage_data():
    """A simulated search's driver never trains or stages data: torch (about 1.5 s of imports,
    several seconds beside a cluster's workers) stays out of its start."""
    loaded = _modules_after_import("import search.cli.commands, search.tuner")
    assert {"search.searcher", "search.tracking.tracker", "ray"} <= loaded
    assert "torch" not in loaded


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_no_module_or_function_is_too_long_to_read():
    """A module a maintainer can hold in their head, a function that fits on a screen."""
    too_long = []
    for path in _sources(*PACKAGES, "bench"):
        text = path.read_text()
        name = path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - first + 1 > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: "
                                    f"{node.end_lineno - first + 1} lines")
    assert too_long == []


def _private_imports(path: Path, module: str) -> list[str]:
    """`from <project module> import _name` where the module is another one: a private name
    crossing a module's border (`__future__` and dunders are not private)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = _from_module(node, path, module)
            if target.split(".")[0] not in (*PACKAGES, "bench") or target == module:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {target}.{a.name}"
                      for a in node.names if a.name.startswith("_")
                      and not a.name.startswith("__")]
    return found


def test_no_private_name_crosses_a_module_border():
    """Tests and benches use the public surface; modules use each other's public names."""
    found = []
    for path in _sources(*PACKAGES, "bench", "tests"):
        found += _private_imports(path, _module_name(path))
    assert found == []
