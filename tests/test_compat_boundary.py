"""Private names of dependencies are imported only by the adapter modules (``*_compat.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "batchload"


def private_imports(path: Path) -> list[str]:
    """``module.name`` of each private name (or module) a file imports from a dependency."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [node.module] * len(node.names)
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            modules, names = [alias.name for alias in node.names], [""] * len(node.names)
        else:
            continue
        for module, name in zip(modules, names, strict=True):
            if module.split(".")[0] in ("batchload", "__future__"):
                continue
            parts = [*module.split("."), name]
            if any(part.startswith("_") for part in parts):
                found.append(f"{module}.{name}" if name else module)
    return found


def test_only_adapters_import_private_names_of_dependencies() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): names
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.name.endswith("_compat.py") and (names := private_imports(path))
    }
    assert offenders == {}


def test_the_check_sees_the_adapters_private_imports() -> None:
    found = private_imports(PACKAGE / "contract" / "pandera_compat.py")
    assert "pandera.io._flat_checks.unflatten_component_checks_dict" in found
