"""From a request body to a stored file or dataset, off the event loop.

An upload is one job on the ingest thread pool (a hop between threads costs the
event loop more than a small file's whole parsing):

1. read: the JSON skeleton, the field checks and the base64 decoding (pybase64
   releases the GIL); the body is freed as soon as the file is decoded;
2. parse and stage (sha256, write, fsync): one after the other for a small file,
   side by side for a large one, so the disk and the CPUs work together;
3. commit: the schema check against the locked schema and the metadata transaction,
   grouped with the other uploads committing at the same time (see
   :meth:`~batchload.server.store.Store.commit_file`).

Every refusal is an :class:`~batchload.server.errors.ApiError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Final, TypeVar

from batchload.schemadiff import Schema, diff_schemas
from batchload.server.body import FileUpload, dataset_spec, decode_file, file_upload, parse_object
from batchload.server.errors import ApiError, not_found
from batchload.server.parse import ParsedFile, canonical_schema, parse_file
from batchload.server.store import (
    DatasetNotFound,
    DatasetRecord,
    FileRecord,
    NewDataset,
    SchemaConflict,
    StagedFile,
    Store,
    utc_now,
)

T = TypeVar("T")
STAGE_BESIDE_BYTES: Final = 4 * 1024 * 1024
"""Files at least this big are written to disk on a second thread while being parsed."""


async def create_from_file(
    store: Store, pool: Executor, body: bytearray
) -> tuple[DatasetRecord, FileRecord]:
    """``POST /ingestion/datasets``: a new dataset whose locked schema is this file's."""
    box = [body]  # the job takes the only reference, to free the body once decoded
    del body
    return await _in_thread(pool, _create_from_file, store, box)


async def add_file(
    store: Store, pool: Executor, dataset_id: str, locked: Schema, body: bytearray
) -> tuple[FileRecord, bool]:
    """``PUT|POST /ingestion/datasets/{id}/files``: the receipt, and whether it overwrote.

    ``locked`` is the dataset's schema as it was when the request came in; the commit
    checks it again in its transaction, in case the dataset changed meanwhile.
    """
    box = [body]
    del body
    return await _in_thread(pool, _add_file, store, dataset_id, locked, box)


def _create_from_file(store: Store, box: list[bytearray]) -> tuple[DatasetRecord, FileRecord]:
    upload, staged, parsed = _receive(store, box, name_required=True)
    assert upload.name is not None
    dataset_id = uuid.uuid4().hex
    record = _file_record(dataset_id, upload, staged, parsed)
    new = NewDataset(id=dataset_id, name=upload.name, schema=parsed.schema)
    store.commit_file(record, staged, schema=parsed.schema, create=new)
    dataset = store.get_dataset(dataset_id)
    assert dataset is not None
    return dataset, record


def _add_file(
    store: Store, dataset_id: str, locked: Schema, box: list[bytearray]
) -> tuple[FileRecord, bool]:
    upload, staged, parsed = _receive(store, box, name_required=False)
    record = _file_record(dataset_id, upload, staged, parsed)
    try:
        if locked != parsed.schema:
            raise _mismatch(dataset_id, locked, parsed.schema)
        return record, store.commit_file(record, staged, schema=parsed.schema)
    except DatasetNotFound:
        raise not_found(f"dataset {dataset_id!r} was deleted during the upload") from None
    except SchemaConflict as conflict:  # deleted and recreated with another schema meanwhile
        raise _mismatch(dataset_id, conflict.locked, parsed.schema) from None
    finally:
        store.discard(staged)  # a no-op once committed (the bytes were moved into place)


async def create_dataset(
    store: Store, pool: Executor, dataset_id: str, body: bytearray
) -> tuple[DatasetRecord, bool]:
    """``PUT /ingestion/datasets/{id}``: create with an explicit schema; True if created.

    Repeating the same create is harmless (the existing dataset, not created); a
    different schema for an existing id is a ``422`` with the differences.
    """
    spec = dataset_spec(await _in_thread(pool, parse_object, body))
    schema = canonical_schema(spec.schema)
    new = NewDataset(
        id=dataset_id, name=spec.name, schema=schema, identifier=spec.identifier, tags=spec.tags
    )
    record, created = await _in_thread(pool, store.create_dataset, new)
    if not created and record.schema != schema:
        raise _mismatch(dataset_id, record.schema, schema)
    return record, created


def _receive(
    store: Store, box: list[bytearray], *, name_required: bool
) -> tuple[FileUpload, StagedFile, ParsedFile]:
    """Decode, parse and stage the upload in ``box``; nothing is left staged on failure."""
    body = box.pop()
    upload, encoded = file_upload(parse_object(body), name_required=name_required)
    data = decode_file(encoded)
    del body, encoded
    if len(data) < STAGE_BESIDE_BYTES:
        parsed = _parse(upload, data)  # first: a file that does not parse is not written
        return upload, store.stage(data), parsed
    with ThreadPoolExecutor(1, thread_name_prefix="stage") as beside:
        staging = beside.submit(store.stage, data)
        try:
            parsed = _parse(upload, data)
        except BaseException:
            with contextlib.suppress(Exception):
                store.discard(staging.result())
            raise
        return upload, staging.result(), parsed


def _parse(upload: FileUpload, data: bytes) -> ParsedFile:
    return parse_file(
        data,
        upload.file_format,
        read_options=upload.read_options,
        convert_options=upload.convert_options,
    )


def _file_record(
    dataset_id: str, upload: FileUpload, staged: StagedFile, parsed: ParsedFile
) -> FileRecord:
    return FileRecord(
        dataset_id=dataset_id,
        file_id=upload.file_id,
        rows=parsed.rows,
        bytes=staged.bytes,
        sha256=staged.sha256,
        file_format=upload.file_format,
        received_at=utc_now(),
        tags=upload.tags,
    )


def _mismatch(dataset_id: str, locked: Schema, actual: Schema) -> ApiError:
    """422 whose ``details`` lists the differences column by column."""
    differences = [d.to_wire() for d in diff_schemas(locked, actual)]
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


async def _in_thread(pool: Executor, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
