"""batchload: validated, resumable, concurrent bulk loading into a dataset-ingestion API.

The one-call API is imported lazily, so ``import batchload`` (and the CLI's
``--help``) stays fast: polars, pandera and aiohttp load only when used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "BatchloadError",
    "DataFrameUpload",
    "RunSummary",
    "upload_dataframe",
    "upload_dataframe_async",
    "upload_files",
    "upload_files_async",
]

_LAZY = {
    "BatchloadError": "batchload.errors",
    "DataFrameUpload": "batchload.api",
    "RunSummary": "batchload.summary",
    "upload_dataframe": "batchload.api",
    "upload_dataframe_async": "batchload.api",
    "upload_files": "batchload.api",
    "upload_files_async": "batchload.api",
}


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'batchload' has no attribute {name!r}")
    return getattr(import_module(module), name)
