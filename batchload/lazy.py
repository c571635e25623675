"""Modules imported when first used, and named at the top of the module that uses them.

Most runs never read a workbook, an object store or a parquet file, and the libraries
that do (fastexcel, obstore, ``pyarrow.parquet``) added ~12 MiB to a one-file upload's
peak memory and ~30 ms to its start-up when they were imported with the rest. A module
that needs one says so at its top, as with an import, and keeps its types::

    if TYPE_CHECKING:
        import fastexcel
    else:
        fastexcel = lazy_module("fastexcel")

The library is imported when one of its names is first looked up, by whichever thread
is first (Python's import lock makes that once).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["lazy_module"]


class _LazyModule(ModuleType):
    """Stands for a module until one of its names is looked up."""

    def __getattr__(self, name: str) -> Any:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)  # later lookups find the names here
        return getattr(module, name)


def lazy_module(name: str) -> ModuleType:
    """The module ``name`` (e.g. ``"pyarrow.parquet"``), imported on first use."""
    return _LazyModule(name)
