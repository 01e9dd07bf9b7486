"""The import graph is the architecture (DESIGN.md): this test enforces it.

* state/ imports nothing from the project outside state/;
* consensus/ imports only the parts of state's data model it uses (codec,
  crypto, errors): no payloads, transactions or blocks, and never the store;
* p2p/ imports nothing from the project;
* cli/ imports node/ and state/, never consensus/ or p2p/ directly;
* consensus-critical code (state/, consensus/) imports no asyncio, no clock,
  no randomness, and contains no float literals.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"state", "consensus", "p2p", "node", "cli", "configs"}

ALLOWED = {
    "state": {"state"},
    "consensus": {"state.codec", "state.crypto", "state.errors", "consensus"},
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
