"""Imports of `pipeline_core`: no cycles, and no side effects.

Cycles: every module's imports are read from its source. Every import counts,
at module level or inside a function: a cycle that a function-local import
closes is still a cycle, only hidden (it breaks the day someone moves that
import to the top). `if TYPE_CHECKING:` blocks never run and do not count.
`import_graph(root, package)` takes any source tree, so the check can be
pointed at another checkout as well.

Side effects: importing any module imports no TensorFlow and changes no
environment variable; TensorFlow comes through `pipeline_core._tf.tf()`,
which quiets its C++ logs before the first import.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import REPO


@dataclass(frozen=True)
class Edge:
    """`source` imports `target` at `line`; `local` when the import sits in a function."""

    target: str
    line: int
    local: bool


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` under `root`."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement and whether it sits inside a function."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, local = stack.pop()
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                stack.append((ast.Module(body=child.orelse, type_ignores=[]), local))
            elif isinstance(child, ast.Import | ast.ImportFrom):
                yield child, local
            else:
                inside = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                stack.append((child, inside))


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict[str, Path]
) -> set[str]:
    """The package's modules an import statement loads."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    if node.level:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    out = set()
    for alias in node.names:
        if f"{base}.{alias.name}" in modules:
            out.add(f"{base}.{alias.name}")  # a submodule: `from pkg import module`
        elif base in modules:
            out.add(base)  # a name defined in module `base`
    return out


def import_graph(root: Path, package: str) -> dict[str, dict[str, Edge]]:
    """Module -> {imported module of the package -> its first import}, for every module."""
    modules = _modules(root, package)
    graph: dict[str, dict[str, Edge]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: dict[str, Edge] = {}
        for node, local in _imports(tree):
            is_package = path.name == "__init__.py"
            for target in _targets(node, module, is_package, modules):
                if target != module:
                    edge = Edge(target, node.lineno, local)
                    if target not in edges or edges[target].line > edge.line:
                        edges[target] = edge
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, Edge]]) -> list[str] | None:
    """One import cycle as `[a, b, ..., a]`, or None when there is none."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, {})):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, Edge]]) -> str:
    """'import cycle: a -> b (a line 3) -> a (b line 9, inside a function)'."""
    parts = [cycle[0]]
    for source, target in zip(cycle, cycle[1:], strict=False):
        edge = graph[source][target]
        where = f"{source} line {edge.line}" + (", inside a function" if edge.local else "")
        parts.append(f"{target} ({where})")
    return "import cycle: " + " -> ".join(parts)


# --- the package ------------------------------------------------------------------


def test_pipeline_core_has_no_import_cycle():
    graph = import_graph(REPO, "pipeline_core")
    # The walk sees the package: a few edges every version of it has.
    assert "pipeline_core.spec" in graph["pipeline_core.build"]
    assert "pipeline_core._tf" in graph["pipeline_core.build"]
    assert "pipeline_core.analysis.examples" in graph["pipeline_core.analysis.measure"]
    cycle = find_cycle(graph)
    assert cycle is None, describe_cycle(cycle, graph)


# --- the walk itself, on planted packages --------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


def test_every_form_of_import_is_an_edge(tmp_path):
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": """
                import os
                import pkg.b
                from pkg import c
                from pkg.d import name
                from . import e
                from .sub.f import thing
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from pkg import g
                else:
                    from pkg import h

                def later():
                    from .sub import i
            """,
            **{f"pkg/{m}.py": "" for m in "bcdegh"},
            "pkg/sub/__init__.py": "from .f import thing\nfrom .. import b\n",
            "pkg/sub/f.py": "thing = 1\n",
            "pkg/sub/i.py": "",
        },
    )
    graph = import_graph(root, "pkg")
    edges = graph["pkg.a"]
    assert set(edges) == {"pkg.b", "pkg.c", "pkg.d", "pkg.e", "pkg.sub.f", "pkg.h", "pkg.sub.i"}
    assert edges["pkg.sub.i"].local and not edges["pkg.b"].local
    assert set(graph["pkg.sub"]) == {"pkg.sub.f", "pkg.b"}
    assert find_cycle(graph) is None


def test_a_cycle_closed_inside_a_function_is_named(tmp_path):
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/spec.py": """
                from pkg.steps import STEPS

                def check():
                    from pkg.sources import TEMPLATES
            """,
            "pkg/steps.py": "STEPS = {}\n",
            "pkg/sources.py": "from pkg.spec import check\nTEMPLATES = {}\n",
        },
    )
    graph = import_graph(root, "pkg")
    cycle = find_cycle(graph)
    assert cycle is not None and set(cycle) == {"pkg.spec", "pkg.sources"}
    message = describe_cycle(cycle, graph)
    assert message.startswith("import cycle: ")
    assert "pkg.sources (pkg.spec line 5, inside a function)" in message
    assert "pkg.spec (pkg.sources line 1)" in message


# --- no side effects on import ------------------------------------------------------

_TF_LOG_ENV = ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", "ABSL_MIN_LOG_LEVEL")


def _python(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter at the repository root, TF log settings unset."""
    env = {k: v for k, v in os.environ.items() if k not in _TF_LOG_ENV}
    env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )


def test_importing_any_module_imports_no_tensorflow_and_sets_nothing():
    modules = sorted(set(_modules(REPO, "pipeline_core")) - {"pipeline_core.__main__"})
    code = f"""
import importlib, json, os, sys
before = dict(os.environ)
for name in {modules!r}:
    importlib.import_module(name)
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print(json.dumps({{"tensorflow": "tensorflow" in sys.modules, "changed": changed}}))
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"tensorflow": False, "changed": []}


@pytest.mark.slow
def test_tensorflow_comes_through_tf_with_its_logs_quiet():
    code = """
import os
from pipeline_core._tf import lazy_tf, tf
module = tf()
assert tf() is module and lazy_tf.constant is module.constant
print(int(module.constant(2) * 3), os.environ["TF_CPP_MIN_LOG_LEVEL"])
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["6", "2"]
    assert "tensorflow" not in done.stderr.lower(), done.stderr
