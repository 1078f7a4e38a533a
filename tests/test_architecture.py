"""The package's import graph points only downward: ``common/`` imports no family, and no family imports another
except DrQ, which is GAARASAC with DrQ's defaults (``docs/architecture.md`` draws this map)."""

from __future__ import annotations

import ast
from pathlib import Path

import sb3_gaara

PACKAGE = Path(sb3_gaara.__file__).parent
FAMILIES = ("gaara", "drq", "slac", "dreamer")
#: the one arrow between families the map draws: module -> family it may import
ALLOWED = {"sb3_gaara.drq.drq": "gaara"}


def _imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def _arrows() -> list[tuple[str, str]]:
    arrows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        room = module.split(".")[1] if module.count(".") >= 2 else None
        for imported in _imports(path):
            parts = imported.split(".")
            if len(parts) < 2 or parts[0] != "sb3_gaara" or parts[1] not in FAMILIES:
                continue
            target = parts[1]
            if room == "common" or (room in FAMILIES and room != target and ALLOWED.get(module) != target):
                arrows.append((module, imported))
    return arrows


def test_common_imports_no_family_and_families_import_no_other_but_drq_on_gaara():
    assert _arrows() == []


def test_the_check_sees_an_upward_arrow(tmp_path, monkeypatch):
    room = tmp_path / "sb3_gaara" / "common"
    room.mkdir(parents=True)
    (tmp_path / "sb3_gaara" / "__init__.py").write_text("")
    (room / "bad.py").write_text("from sb3_gaara.slac.slac import SLAC\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "sb3_gaara")
    assert _arrows() == [("sb3_gaara.common.bad", "sb3_gaara.slac.slac")]
