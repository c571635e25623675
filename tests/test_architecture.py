"""The layout's rules, checked: the import contracts, and imports at the top of library code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "batchload"
#: The only place that imports inside functions: commands defer polars, pandera, pyarrow
#: and aiohttp so that ``--help`` and usage errors answer at once.
DEFERS_IMPORTS = PACKAGE / "cli"
MAX_MODULE_LINES = 550


def _library_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if DEFERS_IMPORTS not in p.parents]


def test_the_import_contracts_hold() -> None:
    """Layers in the order data flows, a server apart, no cycles (pyproject.toml)."""
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" KEPT") == 3


def test_library_code_imports_at_the_top() -> None:
    inside: list[str] = []
    for path in _library_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                inside += [
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                    for node in ast.walk(function)
                    if isinstance(node, ast.Import | ast.ImportFrom)
                ]
    assert inside == []


def test_no_module_grows_past_the_size_that_asks_for_a_split() -> None:
    sizes = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_readers_a_csv_upload_does_not_use_load_when_first_used() -> None:
    """fastexcel, obstore and pyarrow.parquet stay out of a CSV upload's process (``lazy``),
    from the command line and from the library's entry point (which sends DataFrames as
    parquet, and so imported it for every file upload: 6-7 MiB of a one-file run)."""
    probe = (
        "import sys, batchload.pipeline.run, batchload.cli.upload, batchload.api\n"
        "lazy = ('fastexcel', 'obstore', 'pyarrow.parquet')\n"
        "print(sorted(name for name in lazy if name in sys.modules))\n"
        "from batchload.read import excel\n"
        "excel.fastexcel.read_excel  # a name looked up: now it is imported\n"
        "print('fastexcel' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "True"]
