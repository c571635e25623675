"""From a request body to a stored file or dataset, off the event loop.

Each upload takes three steps on the ingest thread pool, the middle two at once:

1. read: the JSON skeleton, the field checks and the base64 decoding (pybase64
   releases the GIL); the body is freed as soon as the file is decoded;
2. stage (sha256, write, fsync) *while* parsing (pyarrow is multithreaded), so the
   disk and the CPUs work together;
3. commit: the schema check against the locked schema and the metadata transaction.

Every refusal is an :class:`~batchload.server.errors.ApiError`.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from batchload.server.body import FileUpload, dataset_spec, decode_file, file_upload, parse_object
from batchload.server.errors import ApiError, not_found
from batchload.server.parse import ParsedFile, canonical_schema, parse_file
from batchload.server.schema import Schema, diff_schemas
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


async def create_from_file(
    store: Store, pool: Executor, body: bytearray
) -> tuple[DatasetRecord, FileRecord]:
    """``POST /ingestion/datasets``: a new dataset whose locked schema is this file's."""
    upload, data = await _in_thread(pool, _read_upload, body, True)
    del body
    assert upload.name is not None
    staged, parsed = await _stage_and_parse(store, pool, upload, data)
    del data
    dataset_id = uuid.uuid4().hex
    record = _file_record(dataset_id, upload, staged, parsed)
    new = NewDataset(id=dataset_id, name=upload.name, schema=parsed.schema)
    commit = functools.partial(store.commit_file, schema=parsed.schema, create=new)
    await _in_thread(pool, commit, record, staged)
    dataset = await _in_thread(pool, store.get_dataset, dataset_id)
    assert dataset is not None
    return dataset, record


async def add_file(
    store: Store, pool: Executor, dataset_id: str, locked: Schema, body: bytearray
) -> tuple[FileRecord, bool]:
    """``PUT|POST /ingestion/datasets/{id}/files``: the receipt, and whether it overwrote.

    ``locked`` is the dataset's schema as it was when the request came in; the commit
    checks it again in its transaction, in case the dataset changed meanwhile.
    """
    upload, data = await _in_thread(pool, _read_upload, body, False)
    del body
    staged, parsed = await _stage_and_parse(store, pool, upload, data)
    del data
    record = _file_record(dataset_id, upload, staged, parsed)
    try:
        if locked != parsed.schema:
            raise _mismatch(dataset_id, locked, parsed.schema)
        commit = functools.partial(store.commit_file, schema=parsed.schema)
        return record, await _in_thread(pool, commit, record, staged)
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


def _read_upload(body: bytearray, name_required: bool) -> tuple[FileUpload, bytes]:
    upload, encoded = file_upload(parse_object(body), name_required=name_required)
    return upload, decode_file(encoded)


def _parse(upload: FileUpload, data: bytes) -> ParsedFile:
    return parse_file(
        data,
        upload.file_format,
        read_options=upload.read_options,
        convert_options=upload.convert_options,
    )


async def _stage_and_parse(
    store: Store, pool: Executor, upload: FileUpload, data: bytes
) -> tuple[StagedFile, ParsedFile]:
    """Stage the bytes and parse them at the same time; nothing is left staged on failure."""
    staged, parsed = await asyncio.gather(
        _in_thread(pool, store.stage, data),
        _in_thread(pool, _parse, upload, data),
        return_exceptions=True,
    )
    if isinstance(parsed, BaseException):
        if isinstance(staged, StagedFile):
            store.discard(staged)
        raise parsed
    if isinstance(staged, BaseException):
        raise staged
    return staged, parsed


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


async def _in_thread(pool: Executor, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
