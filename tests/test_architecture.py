"""The import graph is the architecture (DESIGN.md): this test enforces it.

* state/ imports nothing from the project outside state/;
* consensus/ imports only the parts of state's data model it uses (codec,
  crypto, errors), the validator set it reads (state.validators) and the
  verifier seam it implements (state.abc): no payloads, transactions or
  blocks, and never the store;
* p2p/ imports nothing from the project;
* cli/ imports node/ and state/, never consensus/ or p2p/ directly;
* consensus-critical code (state/, consensus/) imports no asyncio, no clock,
  no randomness, and contains no float literals;
* the project's modules import each other without a cycle: every import
  counts (module level, inside functions, under ``if TYPE_CHECKING:``), so a
  circle cannot hide behind a lazy import;
* no RPC module imports the runtime: the method tables get an RpcContext,
  and their parameter parsing (node/rpc_params.py) is a leaf.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"state", "consensus", "p2p", "node", "cli", "configs"}

ALLOWED = {
    "state": {"state"},
    "consensus": {"state.codec", "state.crypto", "state.errors", "state.validators", "state.abc", "consensus"},
    "p2p": {"p2p"},
    "cli": {"cli", "node", "state"},
    "node": PROJECT,
}
FORBIDDEN_STDLIB = {"asyncio", "time", "random", "datetime", "threading", "secrets", "trio"}
# Key generation needs entropy; it never runs during block execution.
RANDOMNESS_ALLOWED = {"state/keyfile.py", "state/crypto.py"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_dependency_rules(package):
    bad = []
    for path in _files(package):
        for name in _imports(path):
            top = name.split(".")[0]
            if top not in PROJECT:
                continue
            allowed = ALLOWED[package]
            if not any(name == a or name.startswith(a + ".") or top == a for a in allowed):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ["state", "consensus"])
def test_consensus_critical_code_is_deterministic(package):
    bad = []
    for path in _files(package):
        rel = str(path.relative_to(ROOT))
        for name in _imports(path):
            top = name.split(".")[0]
            if top in FORBIDDEN_STDLIB:
                bad.append(f"{rel} imports {name}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, float):
                bad.append(f"{rel}:{node.lineno} has a float literal {node.value!r}")
            # isinstance(x, float) to refuse floats is fine; making one is not
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float":
                bad.append(f"{rel}:{node.lineno} converts to float")
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                bad.append(f"{rel}:{node.lineno} uses true division (/); use // on integers")
            if isinstance(node, ast.Attribute) and node.attr in {"urandom", "random", "time_ns", "getrandom"}:
                if rel not in RANDOMNESS_ALLOWED:
                    bad.append(f"{rel}:{node.lineno} uses {node.attr}")
    assert not bad, "\n".join(bad)


# -- import cycles -----------------------------------------------------------------------

CYCLE_CHECKED = ("state", "consensus", "p2p", "node", "cli")


def module_name(root: Path, path: Path) -> str:
    """``node/risk/hook.py`` -> ``node.risk.hook``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the project modules it imports, from every import statement in every
    ``.py`` file under ``root/<package>``: module level, inside functions and under
    ``if TYPE_CHECKING:`` alike.  Relative imports are resolved; ``from pkg import name``
    is an edge to ``pkg.name`` when that is a module, else to ``pkg``; an import of a
    name that is not a module (``import a.b.C``) is an edge to its longest module
    prefix.  Importing ``a.b.c`` also runs the packages ``a`` and ``a.b`` first, so
    those are edges too, except for the importer's own ancestors (a package is in
    ``sys.modules`` before its children run): an ``__init__`` that imports back into
    its importer closes a circle."""
    files = {module_name(root, path): path for pkg in packages for path in sorted((root / pkg).rglob("*.py"))}

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {module: set() for module in files}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".") if package else []
                    if node.level > len(base):
                        continue  # beyond the top-level package: fails at import, names no module
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in files else source)
            for target in targets:
                resolved = known(target)
                if resolved is None:
                    continue
                if resolved != module:
                    graph[module].add(resolved)
                parts = resolved.split(".")
                for depth in range(1, len(parts)):
                    ancestor = ".".join(parts[:depth])
                    own = module == ancestor or module.startswith(ancestor + ".")
                    if ancestor in files and not own:
                        graph[module].add(ancestor)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The components of more than one module in which every module reaches every
    other (Tarjan's algorithm), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
                components.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(components)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component, as a chain ``[a, b, ..., a]``: the
    shortest circle through the component's first module (deterministic)."""
    cycles = []
    for component in strongly_connected(graph):
        members, start = set(component), component[0]
        parents: dict[str, str] = {}
        frontier = [start]
        while start not in parents:  # breadth first, back to start (it is in a cycle)
            reached = []
            for v in frontier:
                for w in sorted(graph[v] & members):
                    if w not in parents:
                        parents[w] = v
                        reached.append(w)
            frontier = reached
        chain = [start]
        v = parents[start]
        while v != start:
            chain.append(v)
            v = parents[v]
        cycles.append([start] + chain[1:][::-1] + [start])
    return cycles


def render_cycles(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in cycles)


def _write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_cycle_check_finds_a_circle_closed_by_lazy_and_type_checking_imports(tmp_path):
    # ring.a -> ring.b at module level, ring.b -> ring.c only under TYPE_CHECKING,
    # ring.c -> ring.a only inside a function, through a relative import.
    root = _write_tree(tmp_path, {
        "ring/__init__.py": "",
        "ring/a.py": "from ring import b\n",
        "ring/b.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from ring.c import Thing
            """,
        "ring/c.py": """
            class Thing:
                def later(self):
                    from . import a
                    return a
            """,
        "other/__init__.py": "",
        "other/leaf.py": "import ring.a\n",
    })
    graph = import_graph(root, ("ring", "other"))
    assert graph["ring.a"] == {"ring.b"} and graph["ring.b"] == {"ring.c"} and graph["ring.c"] == {"ring.a"}
    cycles = import_cycles(graph)
    assert cycles == [["ring.a", "ring.b", "ring.c", "ring.a"]]
    assert render_cycles(cycles) == "ring.a -> ring.b -> ring.c -> ring.a"


def test_the_cycle_check_counts_package_init_edges_and_passes_an_acyclic_tree(tmp_path):
    files = {
        # The package re-exports its modules, which import each other by
        # absolute and relative names and import names (not modules) from
        # siblings: no circle, since no module imports the package itself.
        "pkg/__init__.py": "from pkg.api import serve\nfrom pkg.sub import deep\n",
        "pkg/api.py": """
            from typing import TYPE_CHECKING
            from .models import Model
            if TYPE_CHECKING:
                from pkg.sub.deep import Deep
            def serve():
                from pkg.sub import deep
                import pkg.models
                return deep, pkg.models
            """,
        "pkg/models.py": "from pkg.sub.deep import Deep\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "import json\nclass Deep: ...\n",
        "user/__init__.py": "",
        "user/cli.py": "from pkg import serve\nfrom ..pkg import api  # beyond the root: resolves to nothing\n",
    }
    root = _write_tree(tmp_path / "acyclic", files)
    graph = import_graph(root, ("pkg", "user"))
    assert graph["pkg"] == {"pkg.api", "pkg.sub", "pkg.sub.deep"}
    assert graph["pkg.api"] == {"pkg.models", "pkg.sub", "pkg.sub.deep"}  # pkg.sub's __init__ runs first
    assert graph["user.cli"] == {"pkg"}
    assert import_cycles(graph) == []
    # A module that imports a name from its own package's __init__ closes a
    # circle through the package: pkg -> pkg.api -> pkg.
    files["pkg/api.py"] = "def serve():\n    from pkg import deep\n    from pkg import helper\n"
    files["pkg/__init__.py"] = "from pkg.api import serve\nhelper = 1\n"
    root = _write_tree(tmp_path / "through-init", files)
    cycles = import_cycles(import_graph(root, ("pkg", "user")))
    assert render_cycles(cycles) == "pkg -> pkg.api -> pkg"


def test_the_cycle_check_sees_a_circle_through_the_targets_package_init(tmp_path):
    # Review: app.x imports lib.leaf, which first runs lib/__init__, which imports
    # lib.heavy, which imports app.x: a real circle (import app.x fails).
    root = _write_tree(tmp_path, {
        "app/__init__.py": "",
        "app/x.py": "import lib.leaf\n",
        "lib/__init__.py": "from lib import heavy\n",
        "lib/leaf.py": "",
        "lib/heavy.py": "def later():\n    from app import x\n",
    })
    graph = import_graph(root, ("app", "lib"))
    assert graph["app.x"] == {"lib", "lib.leaf"}
    assert render_cycles(import_cycles(graph)) == "app.x -> lib -> lib.heavy -> app.x"


def test_the_project_has_no_import_cycle():
    graph = import_graph(ROOT, CYCLE_CHECKED)
    cycles = import_cycles(graph)
    report = [f"{' -> '.join(cycle)}\n    (every one of these reaches the others: {', '.join(component)})"
              for cycle, component in zip(cycles, strongly_connected(graph))]
    assert not cycles, "import cycles (lazy and TYPE_CHECKING imports count):\n" + "\n".join(report)


RPC_MODULES = ("node/rpc.py", "node/rpc_pools.py", "node/rpc_risk.py", "node/rpc_context.py",
               "node/rpc_params.py", "node/risk/admin.py")


def test_no_rpc_module_imports_the_runtime_and_param_parsing_is_a_leaf():
    graph = import_graph(ROOT, CYCLE_CHECKED)
    for rel in RPC_MODULES:
        assert (ROOT / rel).exists(), rel
        assert "node.runtime" not in graph[module_name(ROOT, ROOT / rel)], f"{rel} imports node.runtime"
    params = graph["node.rpc_params"]
    assert all(m == "node.jsonrpc" or m.split(".")[0] == "state" for m in params), sorted(params)
