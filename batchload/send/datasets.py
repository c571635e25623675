"""Datasets on the service: list, create, show and delete them; list and delete their files.

Like SigTech's SDK CLI, a target is ``DATASET[/PATTERN]``: DATASET is a dataset's id
or its name (when only one dataset has it), PATTERN a file_id or a glob over file_ids
(``*``, ``?``, ``[...]``, matched case-sensitively). Only the documented calls are
used (``GET /ingestion/datasets/``, ``GET .../{id}/files``, ``DELETE .../files/{file_id}``);
rows, bytes and times are shown when the service gives them (the local server does).

A dataset is created with an explicit schema (``PUT /ingestion/datasets/{id}``, as
SigTech's SDK does): the id is chosen here, so the call is idempotent. Every call goes
through a :class:`~batchload.send.sender.Sender`, so listings, look-ups and deletes are
retried like uploads (429 with Retry-After, 5xx, dropped answers, timeouts): a flaky
service must not make a listing say that files are missing. A delete is idempotent: a
file already gone counts as deleted.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from batchload.errors import AuthError, BatchloadError, ServiceError, UsageError
from batchload.progress import null_sink
from batchload.protocol import ID_PATTERN
from batchload.schemadiff import SchemaDifference, diff_schemas, schema_from_json
from batchload.send.retry import AimdLimit, Pacer, RetryPolicy
from batchload.send.sender import Sender
from batchload.send.transport import IngestionClient

DELETE_CONCURRENCY = 8
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A parsed ``DATASET[/PATTERN]``."""

    dataset: str | None
    """An id or a name; None for every dataset."""
    pattern: str | None = None
    """A file_id or a glob over file_ids; None when no ``/`` was given."""

    @property
    def dataset_is_glob(self) -> bool:
        return self.dataset is not None and bool(_GLOB_CHARS & set(self.dataset))


def parse_target(spec: str | None) -> Target:
    """``None`` -> all datasets; ``ds`` -> one dataset; ``ds/pat`` -> its files matching pat."""
    if spec is None or spec == "":
        return Target(dataset=None)
    dataset, slash, pattern = spec.partition("/")
    if not dataset:
        raise UsageError(f"{spec!r} names no dataset", hint="write DATASET/PATTERN")
    target = Target(dataset=dataset, pattern=pattern if slash else None)
    if target.dataset_is_glob and slash:
        raise UsageError(
            f"{spec!r}: a glob may select datasets or files, not both",
            hint="write DATASET/PATTERN with DATASET an id or a name",
        )
    return target


def is_glob(pattern: str) -> bool:
    """True when ``pattern`` has glob characters (else it is one exact file_id)."""
    return bool(_GLOB_CHARS & set(pattern))


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetInfo:
    """One dataset as the service lists it."""

    id: str
    name: str
    file_count: int | None = None
    rows: int | None = None
    bytes: int | None = None
    created_at: str | None = None

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> DatasetInfo:
        return cls(
            id=str(item.get("id")),
            name=str(item.get("name") or ""),
            file_count=_int(item.get("file_count")),
            rows=_int(item.get("rows")),
            bytes=_int(item.get("bytes")),
            created_at=_str(item.get("created_at")),
        )

    def label(self) -> str:
        """``name (id)`` for messages."""
        return f"{self.name} ({self.id})" if self.name and self.name != self.id else self.id


@dataclass(frozen=True, slots=True, kw_only=True)
class FileInfo:
    """One file of a dataset; the fields past ``file_id`` only when the service gives them."""

    file_id: str
    rows: int | None = None
    bytes: int | None = None
    received_at: str | None = None
    file_format: str | None = None
    sha256: str | None = None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def reader(
    client: IngestionClient,
    *,
    policy: RetryPolicy | None = None,
    concurrency: int = DELETE_CONCURRENCY,
) -> Sender:
    """A Sender for calls made outside an upload run (``ls``, ``rm``, ``reconcile``), under
    ``policy`` (default: the one uploads use)."""
    return Sender(
        client, policy=policy or RetryPolicy(), pacer=Pacer(AimdLimit(concurrency)), sink=null_sink
    )


async def list_datasets(sender: Sender, pattern: str | None = None) -> list[DatasetInfo]:
    """Every dataset, or those whose id or name matches the glob ``pattern``."""
    found = [DatasetInfo.from_json(item) for item in await sender.call(sender.client.list_datasets)]
    if pattern is None:
        return found
    return [
        d
        for d in found
        if fnmatch.fnmatchcase(d.id, pattern) or fnmatch.fnmatchcase(d.name, pattern)
    ]


async def find_dataset(sender: Sender, key: str) -> DatasetInfo:
    """The dataset whose id is ``key``, else the one dataset named ``key``."""
    found = await list_datasets(sender)
    for dataset in found:
        if dataset.id == key:
            return dataset
    named = [d for d in found if d.name == key]
    if len(named) == 1:
        return named[0]
    if named:
        ids = ", ".join(d.id for d in named)
        raise UsageError(
            f"{len(named)} datasets are named {key!r} (ids {ids})", hint="name it by its id"
        )
    raise UsageError(
        f"no dataset with id or name {key!r} at {sender.client.endpoint}",
        hint="`batchload ls` lists the datasets",
    )


async def list_files(sender: Sender, dataset_id: str, pattern: str | None = None) -> list[FileInfo]:
    """The dataset's files sorted by file_id; only those matching ``pattern`` when given."""
    answer = await sender.call(functools.partial(sender.client.list_files, dataset_id))
    details = {str(f.get("file_id")): f for f in answer.get("files") or [] if isinstance(f, dict)}
    files = []
    for file_id in sorted({str(i) for i in answer["ids"]}):
        if pattern is not None and not fnmatch.fnmatchcase(file_id, pattern):
            continue
        item = details.get(file_id, {})
        files.append(
            FileInfo(
                file_id=file_id,
                rows=_int(item.get("rows")),
                bytes=_int(item.get("bytes")),
                received_at=_str(item.get("received_at")),
                file_format=_str(item.get("file_format")),
                sha256=_str(item.get("sha256")),
            )
        )
    return files


@dataclass(frozen=True, slots=True, kw_only=True)
class Deleted:
    """What a delete did: file_ids deleted (or already gone) and those that failed, why."""

    deleted: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = field(default=())


async def delete_files(
    sender: Sender,
    dataset_id: str,
    file_ids: Sequence[str],
    *,
    concurrency: int = DELETE_CONCURRENCY,
) -> Deleted:
    """Delete ``file_ids`` from the dataset, ``concurrency`` at a time, retrying faults.

    A file that is already gone (404) counts as deleted. A refused token stops
    everything (it raises); any other failure is recorded for that file.
    """
    client = sender.client
    deleted: list[str] = []
    failed: list[tuple[str, str]] = []

    async def worker(todo: MemoryObjectReceiveStream[str]) -> None:
        async with todo:
            async for file_id in todo:
                try:
                    call = functools.partial(client.delete_file, dataset_id, file_id)
                    await sender.call(call, label=("", file_id))
                except AuthError:
                    raise
                except ServiceError as exc:
                    if exc.status == 404:  # already gone: what was asked for
                        deleted.append(file_id)
                    else:
                        failed.append((file_id, str(exc)))
                except BatchloadError as exc:
                    failed.append((file_id, str(exc)))
                else:
                    deleted.append(file_id)

    send, receive = anyio.create_memory_object_stream[str](concurrency)
    async with anyio.create_task_group() as group:
        async with receive:
            for _ in range(concurrency):
                group.start_soon(worker, receive.clone())
        async with send:
            for file_id in file_ids:
                await send.send(file_id)
    return Deleted(deleted=tuple(sorted(deleted)), failed=tuple(sorted(failed)))


# --- datasets themselves -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetDetail:
    """One dataset with its locked schema and what it holds (``dataset show``)."""

    info: DatasetInfo
    schema: tuple[dict[str, str], ...]
    """The locked schema as the service spells it: ``{"name", "type"}`` per column."""
    file_count: int
    rows: int | None
    """Total rows, when the service reports each file's rows (the local server does)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Created:
    """What ``create_dataset`` did: the dataset, and whether this call made it."""

    info: DatasetInfo
    created: bool


async def create_dataset(
    sender: Sender,
    name: str,
    schema: Sequence[dict[str, str]],
    *,
    dataset_id: str | None = None,
) -> Created:
    """Create dataset ``name`` with the locked schema ``schema`` (id ``dataset_id``, default
    the name), unless that very dataset exists already.

    Refused (UsageError): an id the API cannot take, another dataset of that name (a
    second one would make the name ambiguous), or an existing id locked with another
    schema (the differences are listed).
    """
    dataset_id = dataset_id or name
    if not ID_PATTERN.fullmatch(dataset_id):
        raise UsageError(
            f"{dataset_id!r} cannot be a dataset id (letters, digits, '.', '_', '-'; "
            "at most 128, starting with a letter or digit)",
            hint="pass --id ID",
        )
    found = await list_datasets(sender)
    others = sorted(d.id for d in found if d.name == name and d.id != dataset_id)
    if others:
        raise UsageError(
            f"a dataset named {name!r} exists already (id {', '.join(others)})",
            hint="`batchload dataset show` it, or choose another name",
        )
    client = sender.client
    existing = await sender.call(functools.partial(client.get_dataset, dataset_id))
    if existing is not None:
        differences = schema_differences(existing, schema)
        if differences:
            shown = "; ".join(str(d) for d in differences[:5])
            raise UsageError(
                f"dataset {dataset_id} exists with another locked schema: {shown}",
                hint="a locked schema cannot change; create another dataset",
            )
        return Created(info=DatasetInfo.from_json(existing), created=False)
    answer = await sender.call(
        functools.partial(
            client.create_dataset_with_schema,
            dataset_id,
            name=name,
            schema=list(schema),
            identifier=dataset_id,
        )
    )
    created = DatasetInfo.from_json({"id": dataset_id, "name": name, **answer})
    return Created(info=created, created=True)


def schema_differences(
    dataset: dict[str, Any], schema: Sequence[dict[str, str]]
) -> list[SchemaDifference]:
    """How ``schema`` (the API's spelling) differs from the dataset's locked schema."""
    locked = dataset.get("schema")
    if not isinstance(locked, list) or not all(isinstance(c, dict) for c in locked):
        raise ServiceError(f"dataset {dataset.get('id')!r} came back without a schema list")
    return diff_schemas(schema_from_json(locked), schema_from_json(schema))


async def show_dataset(sender: Sender, key: str) -> tuple[DatasetDetail, dict[str, Any]]:
    """The dataset whose id (or only name) is ``key``: its schema, files and rows; and
    the service's own answer, for a schema diff."""
    info = await find_dataset(sender, key)
    answer = await sender.call(functools.partial(sender.client.get_dataset, info.id))
    if answer is None:
        raise UsageError(f"dataset {info.label()} is gone")
    files = await list_files(sender, info.id)
    counted = [f.rows for f in files]
    rows = sum(r for r in counted if r is not None) if None not in counted else info.rows
    locked = answer.get("schema")
    schema = tuple(
        {"name": str(c.get("name")), "type": str(c.get("type"))}
        for c in (locked if isinstance(locked, list) else [])
        if isinstance(c, dict)
    )
    detail = DatasetDetail(info=info, schema=schema, file_count=len(files), rows=rows)
    return detail, answer


async def delete_dataset(sender: Sender, dataset_id: str) -> None:
    """Delete the dataset and its files (retried; a dataset already gone counts as deleted)."""
    try:
        await sender.call(functools.partial(sender.client.delete_dataset, dataset_id))
    except ServiceError as exc:
        if exc.status != 404:
            raise
