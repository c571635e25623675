"""From a request body to a stored file or dataset: the work of a server worker thread.

Everything heavy runs here, off the event loop: the JSON skeleton, base64 decoding
(pybase64 releases the GIL), the sha256, parsing (pyarrow is multithreaded) and the
durable write. Each function takes the raw body and returns records or raises
:class:`~batchload.server.errors.ApiError`.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from batchload.server.body import (
    FileUpload,
    dataset_spec,
    decode_file,
    file_upload,
    parse_object,
)
from batchload.server.errors import ApiError, not_found
from batchload.server.parse import ParsedFile, canonical_schema, parse_file
from batchload.server.schema import Schema, diff_schemas
from batchload.server.store import (
    DatasetNotFound,
    DatasetRecord,
    FileRecord,
    NewDataset,
    SchemaConflict,
    Store,
    utc_now,
)


def create_from_file(store: Store, body: bytes | bytearray) -> tuple[DatasetRecord, FileRecord]:
    """``POST /ingestion/datasets``: a new dataset whose locked schema is this file's."""
    upload = file_upload(parse_object(body), name_required=True)
    assert upload.name is not None
    data, parsed = _decode_and_parse(upload)
    dataset_id = uuid.uuid4().hex
    record = _file_record(dataset_id, upload, data, parsed)
    new = NewDataset(id=dataset_id, name=upload.name, schema=parsed.schema)
    store.put_file(dataset_id, record, data, schema=parsed.schema, create=new)
    dataset = store.get_dataset(dataset_id)
    assert dataset is not None
    return dataset, record


def add_file(store: Store, dataset_id: str, body: bytes | bytearray) -> tuple[FileRecord, bool]:
    """``PUT|POST /ingestion/datasets/{id}/files``: the receipt, and whether it overwrote."""
    upload = file_upload(parse_object(body), name_required=False)
    dataset = store.get_dataset(dataset_id)
    if dataset is None:
        raise not_found(f"dataset {dataset_id!r} does not exist")
    data, parsed = _decode_and_parse(upload)
    _require_same_schema(dataset_id, dataset.schema, parsed.schema)
    record = _file_record(dataset_id, upload, data, parsed)
    try:
        overwritten = store.put_file(dataset_id, record, data, schema=parsed.schema)
    except DatasetNotFound:
        raise not_found(f"dataset {dataset_id!r} was deleted during the upload") from None
    except SchemaConflict as conflict:  # deleted and recreated with another schema meanwhile
        raise _mismatch(dataset_id, conflict.locked, parsed.schema) from None
    return record, overwritten


def create_dataset(
    store: Store, dataset_id: str, body: bytes | bytearray
) -> tuple[DatasetRecord, bool]:
    """``PUT /ingestion/datasets/{id}``: create with an explicit schema; True if created.

    Repeating the same create is harmless (the existing dataset, not created); a
    different schema for an existing id is a ``422`` with the differences.
    """
    spec = dataset_spec(parse_object(body))
    schema = canonical_schema(spec.schema)
    new = NewDataset(
        id=dataset_id, name=spec.name, schema=schema, identifier=spec.identifier, tags=spec.tags
    )
    record, created = store.create_dataset(new)
    if not created:
        _require_same_schema(dataset_id, record.schema, schema)
    return record, created


def _decode_and_parse(upload: FileUpload) -> tuple[bytes, ParsedFile]:
    data = decode_file(upload.encoded)
    parsed = parse_file(
        data,
        upload.file_format,
        read_options=upload.read_options,
        convert_options=upload.convert_options,
    )
    return data, parsed


def _file_record(
    dataset_id: str, upload: FileUpload, data: bytes, parsed: ParsedFile
) -> FileRecord:
    return FileRecord(
        dataset_id=dataset_id,
        file_id=upload.file_id,
        rows=parsed.rows,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        file_format=upload.file_format,
        received_at=utc_now(),
        tags=upload.tags,
    )


def _require_same_schema(dataset_id: str, locked: Schema, actual: Schema) -> None:
    if locked != actual:
        raise _mismatch(dataset_id, locked, actual)


def _mismatch(dataset_id: str, locked: Schema, actual: Schema) -> ApiError:
    """422 whose ``details`` lists the differences column by column."""
    differences = diff_schemas(locked, actual)
    summary = ", ".join(_describe(d) for d in differences[:5])
    more = f" and {len(differences) - 5} more" if len(differences) > 5 else ""
    return ApiError(
        422,
        "schema_mismatch",
        f"the schema does not match the locked schema of dataset {dataset_id!r}: {summary}{more}",
        details=differences,
    )


def _describe(difference: dict[str, Any]) -> str:
    column, problem = difference["column"], difference["problem"]
    if problem == "type":
        return f"{column!r} is {difference['actual']}, not {difference['expected']}"
    if problem == "reordered":
        return (
            f"{column!r} is at position {difference['actual_position']}, "
            f"not {difference['expected_position']}"
        )
    return f"{column!r} is {problem}"
