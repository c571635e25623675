"""The ingestion API's wire contract, shared by the client and the local server.

Only names and rules both sides must agree on live here: paths, body fields, the
id rule, file formats, error codes and Arrow type names; the request body's envelope
and its size. The contract in full: ``docs/api-contract.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

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

# ------------------------------------------------------------ how a CSV's text is parsed

#: The one text that is null in every column: an empty field, quoted or not.
CSV_NULL: Final = ""


def csv_convert_options(
    column_types: Mapping[str, str], null_values: Sequence[str] = ()
) -> dict[str, Any]:
    """The CSV ``convert_options`` both sides parse with: the client to validate, the
    service (pyarrow's reader, these options as given) to store.

    An empty field is null in every column, text included (``""`` too: a required
    key cannot be satisfied by nothing); every other text is a value, so ``N/A`` in
    a number column is a bad value, never a silent null. ``null_values`` adds the
    spellings a contract names (``metadata.batchload.null_values``). pyarrow's own
    defaults (``#N/A``, ``NULL``, ``NaN``, ... null; an empty text ``""``) would
    otherwise apply on the service, so every key is always sent.
    """
    nulls = list(dict.fromkeys((CSV_NULL, *null_values)))
    return {
        "column_types": dict(column_types),
        "null_values": nulls,
        "strings_can_be_null": True,
        "quoted_strings_can_be_null": True,
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


# ------------------------------------------------- a request body's envelope and size


MIB = 1024 * 1024


DEFAULT_MAX_REQUEST_MB = 5.0


def b64_len(n: int) -> int:
    """Length of the padded standard base64 text of ``n`` bytes."""
    return 4 * ((n + 2) // 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """Every field of a file body except the file's bytes."""

    file_id: str
    file_format: FileFormat
    name: str | None = None
    read_options: Mapping[str, Any] | None = None
    convert_options: Mapping[str, Any] | None = None

    def head_tail(self) -> tuple[bytes, bytes]:
        """The bytes before and after the base64 text."""
        fields: dict[str, Any] = {}
        if self.name is not None:
            fields["name"] = self.name
        fields["upload_format"] = "base64"
        fields["file_format"] = self.file_format
        fields["file_id"] = self.file_id
        if self.read_options:
            fields["read_options"] = dict(self.read_options)
        if self.convert_options:
            fields["convert_options"] = dict(self.convert_options)
        opening = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
        return (opening[:-1] + ',"file":"').encode("ascii"), b'"}'

    def request_bytes(self, raw_bytes: int) -> int:
        """The exact request body size for a file of ``raw_bytes`` bytes."""
        head, tail = self.head_tail()
        return len(head) + b64_len(raw_bytes) + len(tail)


def raw_budget(max_request_bytes: int, envelope: Envelope) -> int:
    """The most file bytes whose body still fits in ``max_request_bytes``."""
    head, tail = envelope.head_tail()
    return max(0, (max_request_bytes - len(head) - len(tail)) // 4 * 3)


def max_request_bytes(mb: float) -> int:
    """``--max-request-mb`` in bytes (MiB, as the SDK's 3.8 MB split implies)."""
    if mb <= 0:
        raise ValueError("max request size must be positive")
    return int(mb * MIB)
