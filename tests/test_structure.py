"""The package's shape, checked: no import cycles, nothing below the app imports the app, no private name crosses
a module boundary, and the linter and the type checker pass."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "edge_proxy"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(tree: ast.AST) -> list[ast.ImportFrom | ast.Import]:
    """Every import statement that runs (at module level or in a function), not those under `if TYPE_CHECKING:`."""
    found: list[ast.ImportFrom | ast.Import] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """module -> the package modules it imports; and (module, imported module, name) for every `from m import n`."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    names: list[tuple[str, str, str]] = []
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = []
                for name in (a.name for a in node.names):
                    if f"{base}.{name}" in modules:  # `from package import submodule`
                        targets.append(f"{base}.{name}")
                    else:
                        targets.append(base)
                        names.append((module, base, name))
            graph[module].update(t for t in targets if t in modules and t != module)
    return graph, names


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            connect(v)
    return out


def test_the_package_has_no_import_cycle():
    graph, _ = _graph()
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_below_the_app_imports_the_app():
    graph, _ = _graph()
    assert sorted(m for m, targets in graph.items() if "edge_proxy.app" in targets) == []


def test_no_private_name_crosses_a_module_boundary():
    _, names = _graph()
    crossing = [(m, base, n) for m, base, n in names if n.startswith("_") and not n.startswith("__")]
    assert crossing == []


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_the_linter_and_the_type_checker_pass(tool):
    binary = shutil.which(tool, path=str(Path(sys.executable).parent)) or shutil.which(tool)
    if binary is None:
        pytest.fail(f"{tool} is not installed: scripts/bootstrap.sh --test installs it")
    args = [binary, "check", "edge_proxy", "tests", "bench"] if tool == "ruff" else [binary]
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


TWINS = [  # (the compiled module's stub, its pure-Python twin)
    ("edge_proxy/_forward_token_c.pyi", "edge_proxy._forward_token_py"),
    ("edge_proxy/metering/_usage_scan_c.pyi", "edge_proxy.metering.usage_scan_py"),
    ("edge_proxy/_headers_c.pyi", "edge_proxy._headers_py"),
    ("edge_proxy/billing/_media_scan_c.pyi", "edge_proxy.billing._media_scan_py"),
    ("edge_proxy/observability/_tally_c.pyi", "edge_proxy.observability._tally_py"),
    ("edge_proxy/log_sinks/_rows_c.pyi", "edge_proxy.log_sinks._rows_py"),
]


def _stub_api(path: Path) -> dict[str, str]:
    """name -> signature text for the functions and methods a stub declares."""
    api: dict[str, str] = {}
    for node in ast.parse((ROOT / path).read_text()).body:
        if isinstance(node, ast.FunctionDef):
            api[node.name] = ast.unparse(node.args) + " -> " + ast.unparse(node.returns or ast.Constant(None))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    api[f"{node.name}.{item.name}"] = (ast.unparse(item.args) + " -> "
                                                       + ast.unparse(item.returns or ast.Constant(None)))
    return api


def _twin_api(module: str, names: list[str]) -> dict[str, str]:
    """The same names' signatures, read from the twin's source."""
    import importlib
    tree = ast.parse(Path(importlib.import_module(module).__file__).read_text())
    api: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            api[node.name] = ast.unparse(node.args) + " -> " + ast.unparse(node.returns or ast.Constant(None))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                key = f"{node.name}.{getattr(item, 'name', '')}"
                if isinstance(item, ast.FunctionDef) and key in names:
                    api[key] = ast.unparse(item.args) + " -> " + ast.unparse(item.returns or ast.Constant(None))
    return api


@pytest.mark.parametrize("stub,twin", TWINS, ids=[t for _, t in TWINS])
def test_each_compiled_module_presents_its_twins_typed_api(stub, twin):
    declared = _stub_api(stub)
    assert declared and _twin_api(twin, list(declared)) == declared
