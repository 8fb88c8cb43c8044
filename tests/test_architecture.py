"""`docs/ARCHITECTURE.md` matches the tree: every module has a row, every listed name exists.

The module tables have the header `| module | owns | main public names |`. The first
cell names one module relative to `pipeline_core` (`spec`, `analysis.examples`; a
package is its `__init__.py`: `analysis`). The last cell lists names, each in
backticks: `name`, `name(args)` (a signature, read as `name`), `mod.name` (a dotted
path from the module) and `Class` (`member`, ...) (members of the class just before
the parenthesis). Every backticked span of that cell must be one of these forms, so a
typo cannot slip through as "not a name". Importing a module must not need
TensorFlow, and nothing here calls `_tf.tf()`.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import REPO

DOC = REPO / "docs" / "ARCHITECTURE.md"
PACKAGE = "pipeline_core"
HEADER = ("module", "owns", "main public names")
# `python -m pipeline_core`: importing it runs the command line, so it has no row;
# the document must still say what it is.
NOT_IMPORTED = {"__main__"}

_SPAN = re.compile(r"`([^`]*)`")
_NAME = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(\(.*\))?")


@dataclass(frozen=True)
class Name:
    """A listed name: `path` (dotted from the module), `owner` set for a class member."""

    path: str
    owner: str | None = None

    def __str__(self) -> str:
        return f"{self.owner}.{self.path}" if self.owner else self.path


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse_names(cell: str) -> list[Name]:
    """The names of a "main public names" cell.

    Raises:
        ValueError: a backticked span is not a name (or a member before any class).
    """
    names: list[Name] = []
    depth = 0  # parentheses open outside backticks: spans inside are members
    owner: str | None = None
    position = 0
    for span in _SPAN.finditer(cell):
        between = cell[position : span.start()]
        position = span.end()
        for char in between:
            if char == "(":
                depth += 1
            elif char == ")":
                depth = max(depth - 1, 0)
        match = _NAME.fullmatch(span.group(1).strip())
        if match is None:
            raise ValueError(f"`{span.group(1)}` is not a name in {cell!r}")
        if depth:
            if owner is None:
                raise ValueError(f"member `{span.group(1)}` follows no name in {cell!r}")
            names.append(Name(match.group(1), owner))
        else:
            owner = match.group(1)
            names.append(Name(owner))
    if cell.count("`") % 2:
        raise ValueError(f"unbalanced backticks in {cell!r}")
    return names


def module_rows(text: str) -> dict[str, list[Name]]:
    """Module (relative to the package) -> listed names, from every module table.

    Raises:
        ValueError: a row names no module, or a module has two rows.
    """
    rows: dict[str, list[Name]] = {}
    in_table = False
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            in_table = False
            continue
        cells = _cells(line)
        if tuple(c.lower() for c in cells) == HEADER:
            in_table = True
            continue
        if not in_table or set("".join(cells)) <= set("-: "):
            continue
        if len(cells) != len(HEADER):
            raise ValueError(f"a module row needs {len(HEADER)} cells: {line!r}")
        module = _SPAN.fullmatch(cells[0])
        if module is None or not _NAME.fullmatch(module.group(1)):
            raise ValueError(f"the first cell must be one backticked module: {line!r}")
        name = module.group(1)
        if name in rows:
            raise ValueError(f"module {name!r} has two rows")
        rows[name] = parse_names(cells[-1])
    return rows


def tree_modules(root: Path, package: str = PACKAGE) -> set[str]:
    """Every module under `root/package`, relative to the package (`analysis` for
    `analysis/__init__.py`, `__init__` for the package's own)."""
    out = set()
    for path in (root / package).rglob("*.py"):
        parts = list(path.relative_to(root / package).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        out.add(".".join(parts))
    return out


def _import(package: str, module: str):
    return importlib.import_module(package if module == "__init__" else f"{package}.{module}")


def _resolve(package: str, module: str, path: str):
    """The object `path` names in `module` (a submodule is imported when not an attribute)."""
    obj = _import(package, module)
    dotted = package if module == "__init__" else f"{package}.{module}"
    for part in path.split("."):
        dotted = f"{dotted}.{part}"
        obj = getattr(obj, part) if hasattr(obj, part) else importlib.import_module(dotted)
    return obj


def _has_member(obj: object, member: str) -> bool:
    """A class attribute, a dataclass or pydantic field, or an attribute its code sets
    on `self` (`SpecError.problems`)."""
    if (
        hasattr(obj, member)
        or member in getattr(obj, "__dataclass_fields__", {})
        or member in getattr(obj, "model_fields", {})
    ):
        return True
    try:
        source = inspect.getsource(obj)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False
    return re.search(rf"\bself\.{re.escape(member)}\s*(?::[^=]+)?=(?!=)", source) is not None


def missing_names(rows: dict[str, list[Name]], package: str = PACKAGE) -> list[str]:
    """Each listed name that its module (or class) does not have, as `module: name`."""
    problems = []
    for module, names in rows.items():
        for name in names:
            try:
                obj = _resolve(package, module, name.owner or name.path)
            except (AttributeError, ImportError):
                problems.append(f"{module}: {name}")
                continue
            if name.owner and not _has_member(obj, name.path):
                problems.append(f"{module}: {name}")
    return problems


# --- the document against the tree --------------------------------------------------------


@pytest.fixture(scope="module")
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rows(doc_text) -> dict[str, list[Name]]:
    return module_rows(doc_text)


def test_every_module_has_a_row_and_every_row_a_module(rows):
    tree = tree_modules(REPO) - NOT_IMPORTED
    assert not tree - set(rows), f"add a row to {DOC.name} for {sorted(tree - set(rows))}"
    assert not set(rows) - tree, f"rows for modules that do not exist: {sorted(set(rows) - tree)}"


def test_modules_without_a_row_are_named(doc_text):
    for module in NOT_IMPORTED & tree_modules(REPO):
        assert f"{PACKAGE}/{module}.py" in doc_text


def test_every_listed_name_exists(rows):
    assert sum(len(names) for names in rows.values()) > 100
    problems = missing_names(rows)
    assert not problems, f"{DOC.name} lists names that do not exist: {problems}"


def test_every_page_is_named(doc_text):
    pages = sorted(p.name for p in (REPO / "pages").glob("*.py") if p.name != "__init__.py")
    assert pages
    missing = [name for name in pages if f"pages/{name}" not in doc_text]
    assert not missing, f"{DOC.name} does not describe pages {missing}"


def test_self_contained(doc_text):
    """No link out of the repository; every repository path it names exists."""
    assert "../" not in doc_text
    links = re.findall(r"\]\(([^)]+)\)", doc_text)
    paths = [span for span in _SPAN.findall(doc_text) if re.fullmatch(r"[\w.-]+/[\w./-]*", span)]
    assert paths
    roots = (DOC.parent, REPO, REPO / PACKAGE)  # a module path may be written from the package
    missing = [p for p in links + paths if not any((root / p).exists() for root in roots)]
    assert not missing, f"{DOC.name} names paths that do not exist: {missing}"


def test_where_things_go_has_a_paragraph_each(doc_text):
    for thing in ("source type", "augmentation", "step op", "CLI command", "page"):
        assert f"**A new {thing}.**" in doc_text


# --- the checks themselves can fail -------------------------------------------------------

TABLE = """
Some text with `not_a_row` and | a | pipe |.

| module | owns | main public names |
| --- | --- | --- |
| `paths` | where files live, `{data_dir}` and `"autotune"` here are not names | `data_dir`, `resolve_path(path)`, `ENV_HOME` |
| `store` | runs | `RunStore` (`list_runs`, `get_run`), `RunInfo`, `StoreError` |
| `analysis` | a package | `figures.stage_waterfall`, `tune` |

| other | table |
| --- | --- |
| `ignored` | `too` |
"""


def test_parse_reads_names_members_signatures_and_dotted_paths():
    rows = module_rows(TABLE)
    assert list(rows) == ["paths", "store", "analysis"]
    assert [str(n) for n in rows["paths"]] == ["data_dir", "resolve_path", "ENV_HOME"]
    assert [str(n) for n in rows["store"]] == [
        "RunStore",
        "RunStore.list_runs",
        "RunStore.get_run",
        "RunInfo",
        "StoreError",
    ]
    assert rows["analysis"] == [Name("figures.stage_waterfall"), Name("tune")]
    assert missing_names(rows) == []


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("`data_dir`, `--budget-s`", "not a name"),
        ('`"autotune"`', "not a name"),
        ("(`wait`)", "follows no name"),
        ("`data_dir`, `resolve_path", "unbalanced"),
    ],
)
def test_parse_refuses_what_is_not_a_name(cell, reason):
    with pytest.raises(ValueError, match=reason):
        parse_names(cell)


def test_parse_refuses_bad_rows():
    header = "| module | owns | main public names |\n| --- | --- | --- |\n"
    with pytest.raises(ValueError, match="two rows"):
        module_rows(header + "| `paths` | a | `data_dir` |\n| `paths` | b | `demo_dir` |")
    with pytest.raises(ValueError, match="one backticked module"):
        module_rows(header + "| `paths`, `store` | a | `data_dir` |")
    with pytest.raises(ValueError, match="cells"):
        module_rows(header + "| `paths` | `data_dir` |")


def test_a_removed_name_or_member_is_reported():
    rows = module_rows(
        TABLE.replace("`ENV_HOME`", "`ENV_HOME`, `no_such_name`")
        .replace("`get_run`", "`get_run`, `no_such_method`, `path`")
        .replace("`tune`", "`tune`, `figures.no_such_figure`, `no_such_module.x`")
    )
    assert missing_names(rows) == [
        "paths: no_such_name",
        "store: RunStore.no_such_method",
        "analysis: figures.no_such_figure",
        "analysis: no_such_module.x",
    ]


def test_an_added_module_is_found(tmp_path):
    for path in ("pkg/__init__.py", "pkg/a.py", "pkg/sub/__init__.py", "pkg/sub/b.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    assert tree_modules(tmp_path, "pkg") == {"__init__", "a", "sub", "sub.b"}
    assert "child" in tree_modules(REPO) and "profile.worker" in tree_modules(REPO)


def test_the_names_resolve_without_tensorflow():
    """Importing the modules the document lists needs no TensorFlow (it is blocked here)."""
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "from tests.test_architecture import DOC, missing_names, module_rows\n"
        "print(missing_names(module_rows(DOC.read_text(encoding='utf-8'))))\n"
        "assert 'tensorflow' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout
