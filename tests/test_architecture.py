"""The layering rules of the codebase, checked so they stay true."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRANSPORT = ("botbuilder", "botframework", "aiohttp", "msrest")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["storage", "cards"])
def test_domain_packages_do_not_import_the_transport(package: str) -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in TRANSPORT or name.split(".")[0] in ("bot", "dialogs")
    }
    assert not offenders


def test_environment_is_read_in_one_place() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for package in ("bot", "dialogs", "storage", "cards")
        for path in (ROOT / package).rglob("*.py")
        if "os.environ" in path.read_text(encoding="utf-8")
        or "getenv" in path.read_text(encoding="utf-8")
    ]
    assert readers == []
