"""What both SQL stores share: the few calls made of a connection, and the base class
that gives the ledger's queries their connections and dialect words.

A store subclass supplies a connection (:meth:`SqlBase._reading` for one statement or a
few, :meth:`SqlBase._writing` for one transaction) and a handful of dialect words
(``NOW`` as epoch seconds, ``GREATEST``, row locks). Statements use ``?`` placeholders;
the PostgreSQL adapter turns them into psycopg's. Every use of a connection is timed
(:attr:`SqlBase.spent`): the ledger's own cost, which a run reports.

A source path that is not UTF-8 (a file name in another encoding) cannot be text in
either database: each store's connection keeps it as ``bytes:`` and its bytes in hex
(:func:`to_db`, :func:`from_db`), which no absolute path nor URL begins with, so paths
stay exact and distinct and such a name never stops a run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from batchload.state.ledger import LedgerTime

IN_CHUNK = 500


class Db(Protocol):
    """The few calls the ledger makes of a connection (``?`` placeholders)."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def records(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...
    def run(self, sql: str, params: Sequence[Any] = ()) -> None: ...
    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


_BYTES = "bytes:"


def to_db(value: Any) -> Any:
    """A parameter as the database keeps it: a path that is not UTF-8 as ``bytes:<hex>``."""
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes of a file name (surrogate escapes)
            return _BYTES + os.fsencode(value).hex()
    return value


def from_db(value: Any) -> Any:
    """What :func:`to_db` stored, as Python names it again."""
    if isinstance(value, str) and value.startswith(_BYTES):
        return os.fsdecode(bytes.fromhex(value.removeprefix(_BYTES)))
    return value


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def marks(items: Sequence[object]) -> str:
    return ", ".join("?" for _ in items)


class SqlBase:
    """Connections and dialect words, the subclass's (see the module docstring)."""

    NOW = ""
    """An SQL expression: the store's clock in epoch seconds, fixed within a statement."""
    GREATEST = "max"
    LEAST = "min"
    FOR_UPDATE = ""
    """Row locks on the claims a write checks (PostgreSQL); SQLite locks the database."""
    SKIP_LOCKED = ""

    location: str

    def __init__(self) -> None:
        self.spent = LedgerTime()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Db]:
        with self.spent.timing(), self._reading() as db:
            yield db

    @contextlib.contextmanager
    def _write(self) -> Iterator[Db]:
        with self.spent.timing(), self._writing() as db:
            yield db

    # --- connections: the subclass's --------------------------------------------------

    def _reading(self) -> contextlib.AbstractContextManager[Db]:
        raise NotImplementedError

    def _writing(self) -> contextlib.AbstractContextManager[Db]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
