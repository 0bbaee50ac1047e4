"""The package's layers import only what they may (an AST walk over every module).

- ``ledger`` is the offline verifier auditors run: the standard library, ``cryptography``,
  ``orjson``, ``audit_pipeline.errors`` and ``audit_pipeline.text`` (wording, stdlib only)
  only, so it stays small and checkable;
- ``slack`` knows nothing of the lake, the ledger, the dataset or Dagster;
- ``lake`` knows nothing of Slack, the dataset, Dagster or DuckDB;
- ``witness`` (a server run elsewhere, and the committer's client) builds on ``ledger``
  only: no Slack, lake, ingest, dataset or Dagster;
- below ``defs`` and ``cli`` (the Dagster and command-line faces) nothing imports Dagster
  or those faces. ``definitions.py`` is the Dagster code location itself.

Imports inside functions and under ``TYPE_CHECKING`` count, and so do
``importlib.import_module("...")`` calls with a literal name.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import audit_pipeline

PACKAGE = Path(audit_pipeline.__file__).parent
STDLIB = frozenset(sys.stdlib_module_names)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """_imports yields (line, absolute module name) for every import in the file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    yield from _imports_in(path.read_text(encoding="utf-8"), package, str(path))


def _imports_in(source: str, package: str, filename: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # "from audit_pipeline import lake" imports the module audit_pipeline.lake.
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield node.lineno, submodule if _is_module(submodule) else base
        elif isinstance(node, ast.Call) and _is_import_call(node):
            yield node.lineno, node.args[0].value  # type: ignore[attr-defined]


def _is_module(name: str) -> bool:
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_import_call(node: ast.Call) -> bool:
    func = node.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in {"import_module", "__import__"}
    )
    return (
        named
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def _files(*subpackages: str) -> list[Path]:
    roots = [PACKAGE / s for s in subpackages] if subpackages else [PACKAGE]
    return sorted(p for root in roots for p in root.rglob("*.py"))


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(files: list[Path], allowed) -> list[str]:
    found = []
    for path in files:
        for line, name in _imports(path):
            if not allowed(name):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {name}")
    return found


def test_the_walk_sees_every_kind_of_import() -> None:
    """The checker itself: relative, nested, from-package and import_module imports."""
    source = (
        "import importlib\n"
        "from . import merkle\n"
        "from .. import lake\n"
        "from ..dataset.build import dataset_path\n"
        "def f():\n"
        "    import duckdb\n"
        "    importlib.import_module('dagster')\n"
    )
    names = sorted(name for _, name in _imports_in(source, "audit_pipeline.ledger", "probe"))
    assert names == [
        "audit_pipeline.dataset.build",
        "audit_pipeline.lake",
        "audit_pipeline.ledger.merkle",
        "dagster",
        "duckdb",
        "importlib",
    ]


def test_ledger_imports_only_the_stdlib_cryptography_orjson_and_itself() -> None:
    def allowed(name: str) -> bool:
        top = name.partition(".")[0]
        return (
            top in STDLIB
            or top in {"cryptography", "orjson"}
            or _within(
                name, ("audit_pipeline.errors", "audit_pipeline.text", "audit_pipeline.ledger")
            )
        )

    assert _violations(_files("ledger"), allowed) == []


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        (
            "slack",
            (
                "audit_pipeline.lake",
                "audit_pipeline.ledger",
                "audit_pipeline.dataset",
                "audit_pipeline.defs",
                "dagster",
                "pyarrow",
                "duckdb",
            ),
        ),
        (
            "witness",
            (
                "audit_pipeline.slack",
                "audit_pipeline.lake",
                "audit_pipeline.dataset",
                "audit_pipeline.ingest",
                "audit_pipeline.defs",
                "dagster",
                "pyarrow",
                "duckdb",
            ),
        ),
        (
            "lake",
            (
                "audit_pipeline.slack",
                "audit_pipeline.dataset",
                "audit_pipeline.defs",
                "dagster",
                "duckdb",
            ),
        ),
        (
            "store",
            (
                "audit_pipeline.slack",
                "audit_pipeline.lake",
                "audit_pipeline.dataset",
                "audit_pipeline.ingest",
                "audit_pipeline.defs",
                "audit_pipeline.cli",
                "dagster",
                "duckdb",
            ),
        ),
    ],
)
def test_layer_never_imports(layer: str, forbidden: tuple[str, ...]) -> None:
    assert _violations(_files(layer), lambda name: not _within(name, forbidden)) == []


def test_nothing_below_defs_and_cli_imports_dagster_or_them() -> None:
    faces = (PACKAGE / "defs", PACKAGE / "cli")
    below = [
        p
        for p in _files()
        if not any(p.is_relative_to(face) for face in faces) and p.name != "definitions.py"
    ]
    assert len(below) > 20  # the walk found the package
    forbidden = ("dagster", "audit_pipeline.cli", "audit_pipeline.defs")
    assert _violations(below, lambda name: not _within(name, forbidden)) == []


def test_shared_wording_imports_only_the_stdlib() -> None:
    """``audit_pipeline.text`` is used by every layer, the ledger included."""
    allowed = lambda name: name.partition(".")[0] in STDLIB  # noqa: E731
    assert _violations([PACKAGE / "text.py"], allowed) == []
