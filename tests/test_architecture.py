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


def _imports(path: Path, module: str) -> set[str]:
    """Project modules `module` imports, resolved to the longest existing module name."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
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
