"""Request bodies: JSON parsed without copying the big base64 string, then checked.

A 100 MB file arrives as a ~133 MB base64 string inside a small JSON object.
``json.loads`` would hold the GIL for about half a second copying it twice, which
serialises concurrent uploads. :func:`loads` parses only the small *skeleton* of
the document and hands back long, escape-free strings as :class:`RawString` views
of the body; ``pybase64`` then decodes the view directly, releasing the GIL.

For valid JSON the result is ``json.loads``'s with RawString in place of the long
strings (a test checks it); malformed JSON raises ``ValueError`` either way. The bytes
inside a long string are checked only when used: the base64 decoder refuses anything
that is not base64, and :meth:`RawString.text` parses the string as JSON would.
"""

from __future__ import annotations

import binascii
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pybase64

from batchload.protocol import FILE_FORMATS, UPLOAD_FORMATS, FileFormat, is_valid_id
from batchload.server.errors import bad_request, unsupported

#: Strings at least this long (in bytes, without escapes) are left undecoded.
LARGE_STRING_BYTES: Final = 64 * 1024
#: A body with more strings than this is parsed by json.loads alone: upload bodies have
#: a handful, and the byte-level scan is a Python loop per string.
MAX_SCANNED_STRINGS: Final = 10_000

_QUOTE, _BACKSLASH = b'"', b"\\"


@dataclass(frozen=True, slots=True)
class RawString:
    """A long JSON string without escapes: a view of the bytes between its quotes."""

    data: memoryview

    def text(self) -> str:
        """The string itself, for the rare long field that is not a file."""
        text: str = json.loads(b'"' + bytes(self.data) + b'"')
        return text


def loads(body: bytes | bytearray, *, large_string_bytes: int = LARGE_STRING_BYTES) -> Any:
    """Parse JSON like ``json.loads``; long escape-free strings come back as RawString."""
    if json.detect_encoding(body) != "utf-8":  # utf-16/32 or a BOM: no byte-level scan
        return json.loads(body)
    view = memoryview(body)
    nonce = secrets.token_hex(8)
    spans: dict[str, RawString] = {}
    pieces: list[bytes | memoryview] = []
    copied_to = 0
    position = 0
    scanned = 0
    while (start := body.find(_QUOTE, position)) >= 0:
        end = _closing_quote(body, start)
        scanned += 1
        if end < 0 or scanned > MAX_SCANNED_STRINGS:  # unterminated (json reports it), or many
            return json.loads(body)
        if end - start - 1 >= large_string_bytes and body.find(_BACKSLASH, start, end) < 0:
            placeholder = f"\x00{nonce}:{len(spans)}"
            spans[placeholder] = RawString(view[start + 1 : end])
            pieces += [view[copied_to : start + 1], json.dumps(placeholder)[1:-1].encode()]
            copied_to = end
        position = end + 1
    if not spans:
        return json.loads(body)
    pieces.append(view[copied_to:])
    return _restore(json.loads(b"".join(pieces)), spans)


def _closing_quote(body: bytes | bytearray, start: int) -> int:
    """Index of the quote closing the string opened at ``start``, or -1."""
    position = start + 1
    while (end := body.find(_QUOTE, position)) >= 0:
        backslashes = 0
        while body[end - 1 - backslashes] == 0x5C:  # a quote after an odd run is escaped
            backslashes += 1
        if backslashes % 2 == 0:
            return end
        position = end + 1
    return -1


def _restore(value: Any, spans: Mapping[str, RawString]) -> Any:
    """Put the raw strings back where their placeholders were parsed."""
    if isinstance(value, str):
        return spans.get(value, value)
    if isinstance(value, list):
        return [_restore(item, spans) for item in value]
    if isinstance(value, dict):
        return {
            _as_text(_restore(key, spans)): _restore(item, spans) for key, item in value.items()
        }
    return value


def _as_text(value: str | RawString) -> str:
    return value.text() if isinstance(value, RawString) else value


# --- field checks ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FileUpload:
    """A checked file body: the guide's fields plus the SDK's optional ones."""

    name: str | None
    file_id: str
    file_format: FileFormat
    tags: Mapping[str, Any] | None
    read_options: Mapping[str, Any]
    convert_options: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetSpec:
    """A checked explicit-schema create body (``PUT /ingestion/datasets/{id}``)."""

    name: str
    schema: list[Mapping[str, Any]]
    identifier: str | None
    tags: Mapping[str, Any] | None


def parse_object(body: bytes | bytearray) -> dict[str, Any]:
    """The body as a JSON object, or 400."""
    try:
        value = loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise bad_request(f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise bad_request("the body must be a JSON object")
    return value


def file_upload(
    body: Mapping[str, Any], *, name_required: bool
) -> tuple[FileUpload, str | RawString]:
    """Check a file body's fields (400 missing or mistyped, 415 formats); the upload's
    fields, and the still-encoded file, kept apart so the body can be freed once decoded."""
    name = _field(body, "name", str, required=name_required)
    encoded = body.get("file")
    if encoded is None:
        raise bad_request("missing field 'file'", details={"field": "file"})
    if not isinstance(encoded, str | RawString):
        raise bad_request("field 'file' must be a base64 string", details={"field": "file"})
    upload_format = _field(body, "upload_format", str, required=True)
    file_format = _field(body, "file_format", str, required=True)
    file_id = _field(body, "file_id", str, required=True)
    if upload_format not in UPLOAD_FORMATS:
        raise unsupported(
            f"upload_format {upload_format!r} is not supported",
            details={"field": "upload_format", "supported": list(UPLOAD_FORMATS)},
        )
    if file_format not in FILE_FORMATS:
        raise unsupported(
            f"file_format {file_format!r} is not supported",
            details={"field": "file_format", "supported": list(FILE_FORMATS)},
        )
    check_id(file_id, "file_id")
    upload = FileUpload(
        name=name,
        file_id=file_id,
        file_format=file_format,  # checked against FILE_FORMATS above
        tags=_field(body, "tags", dict, required=False),
        read_options=_field(body, "read_options", dict, required=False) or {},
        convert_options=_field(body, "convert_options", dict, required=False) or {},
    )
    return upload, encoded


def dataset_spec(body: Mapping[str, Any]) -> DatasetSpec:
    """Check an explicit-schema create body; column types are checked by the parser."""
    schema = _field(body, "schema", list, required=True)
    if not schema or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("type"), str)
        for c in schema
    ):
        raise bad_request(
            'field \'schema\' must be a non-empty array of {"name": str, "type": str}',
            details={"field": "schema"},
        )
    return DatasetSpec(
        name=_field(body, "name", str, required=True),
        schema=schema,
        identifier=_field(body, "identifier", str, required=False),
        tags=_field(body, "tags", dict, required=False),
    )


def decode_file(encoded: str | RawString) -> bytes:
    """The file's bytes from standard padded base64, or 400; an empty file is 400 too."""
    source = encoded.data if isinstance(encoded, RawString) else encoded
    try:
        data = pybase64.b64decode(source, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise bad_request(f"field 'file' is not valid base64: {exc}") from None
    if not data:
        raise bad_request("the file is empty", details={"field": "file"})
    return data


def check_id(value: str, what: str) -> str:
    """400 unless ``value`` matches the id rule (so it is also a safe path component)."""
    if not is_valid_id(value):
        raise bad_request(
            f"{what} {value[:200]!r} is not a valid id",
            details={"field": what, "pattern": "[A-Za-z0-9][A-Za-z0-9._-]{0,127}"},
        )
    return value


def _field(body: Mapping[str, Any], key: str, kind: type, *, required: bool) -> Any:
    value = body.get(key)
    if isinstance(value, RawString) and kind is str:
        try:
            value = value.text()
        except ValueError as exc:
            raise bad_request(f"field {key!r} is not a valid JSON string: {exc}") from None
    if value is None:
        if required:
            raise bad_request(f"missing field {key!r}", details={"field": key})
        return None
    if not isinstance(value, kind):
        raise bad_request(
            f"field {key!r} must be a {_KIND_NAMES[kind]}",
            details={"field": key, "expected": _KIND_NAMES[kind]},
        )
    return value


_KIND_NAMES: Final[dict[type, str]] = {str: "string", dict: "JSON object", list: "JSON array"}
