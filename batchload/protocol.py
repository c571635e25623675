"""The ingestion API's wire contract, shared by the client and the local server.

Only names and rules both sides must agree on live here: paths, body fields, the
id rule, file formats, error codes and Arrow type names. See ``shared/ingestion-api.md``.
"""

from __future__ import annotations

import re
from typing import Final, Literal

FileFormat = Literal["csv", "parquet", "xls", "xlsx"]
FILE_FORMATS: Final[tuple[FileFormat, ...]] = ("csv", "parquet", "xls", "xlsx")
UPLOAD_FORMATS: Final[tuple[str, ...]] = ("base64",)

#: A dataset or file id: what both the server accepts and the client generates.
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

DATASETS_PATH: Final = "/ingestion/datasets"
HEALTH_PATH: Final = "/healthz"

#: File-name suffix to file_format, for discovery and for the server's own checks.
SUFFIX_FORMATS: Final[dict[str, FileFormat]] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xls": "xls",
    ".xlsx": "xlsx",
}

# Error codes in ``{"error": {"code", "message", "details"}}``.
ErrorCode = Literal[
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "request_timeout",
    "payload_too_large",
    "unsupported_format",
    "schema_mismatch",
    "rate_limited",
    "unavailable",
    "internal",
]

#: Arrow spells some types two ways; the API reports the short spelling.
_ARROW_ALIASES: Final[dict[str, str]] = {
    "large_string": "string",
    "string_view": "string",
    "utf8": "string",
    "large_utf8": "string",
    "large_binary": "binary",
    "binary_view": "binary",
    "float64": "double",
    "float32": "float",
    "float16": "halffloat",
    "boolean": "bool",
    "date32": "date32[day]",
    "date64": "date64[ms]",
}


def normalize_arrow_type(name: str) -> str:
    """Return the API's spelling of an Arrow type name (``large_string`` -> ``string``)."""
    name = name.strip()
    return _ARROW_ALIASES.get(name, name)


def is_valid_id(value: str) -> bool:
    """True when ``value`` can be a dataset id or file_id."""
    return ID_PATTERN.fullmatch(value) is not None
