"""The ledger in PostgreSQL: one run shared by processes on many machines.

``--manifest postgresql://USER@HOST:PORT/DB`` (or ``BATCHLOAD_MANIFEST``) selects it; it
needs the optional extra ``batchload[postgres]`` (psycopg 3 and its pool), imported
only here. The queries are the SQLite manifest's (:mod:`batchload.state.sqlstore`);
this module gives them connections and the dialect: claims are taken with ``FOR
UPDATE SKIP LOCKED``, a write row-locks the claims it checks, and every time is the
server's (``statement_timestamp()``), so the machines' clocks do not matter.

Tables are created and versioned here, on first use, under an advisory lock (several
processes starting together create them once); ``batchload_meta`` holds the schema
version, and a ledger made by a newer batchload is refused. The URL's password is
never shown: :attr:`PostgresLedger.location` and every error carry it redacted
(``PGPASSWORD`` or ``~/.pgpass`` keep it out of the URL altogether).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from batchload.errors import LedgerError, UsageError
from batchload.state.ledger import redact
from batchload.state.sqlbase import from_db, to_db
from batchload.state.sqlstore import SqlLedger

try:
    import psycopg
    import psycopg_pool
except ImportError:  # pragma: no cover - installed without the extra batchload[postgres]
    psycopg = None  # type: ignore[assignment]
    psycopg_pool = None  # type: ignore[assignment]

SCHEMA_VERSION = 3
POOL_SIZE = 4
CONNECT_TIMEOUT_S = 10
_SCHEMA_LOCK = 0x6261_7463_686C  # pg_advisory_xact_lock key: "batchl"

_SCHEMA = """
CREATE TABLE datasets (
    name TEXT PRIMARY KEY,
    dataset_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('creating', 'ready')),
    endpoint TEXT NOT NULL,
    contract TEXT,
    file_id_template TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE files (
    dataset TEXT NOT NULL,
    source_path TEXT NOT NULL,
    part INTEGER NOT NULL DEFAULT 0,
    parts INTEGER,
    file_id TEXT,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    sha256 TEXT,
    sent_sha256 TEXT,
    file_format TEXT,
    converted_from TEXT,
    dataset_id TEXT,
    rows BIGINT,
    bytes_sent BIGINT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'invalid', 'sent', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT,
    receipt TEXT,
    owner TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    done_at TEXT,
    PRIMARY KEY (dataset, source_path, part),
    UNIQUE (dataset, file_id)
);
CREATE TABLE file_keys (
    dataset TEXT NOT NULL,
    source_path TEXT NOT NULL,
    scheme TEXT NOT NULL,
    hashes BYTEA NOT NULL,
    PRIMARY KEY (dataset, source_path)
);
CREATE TABLE claims (
    dataset TEXT NOT NULL,
    source_path TEXT NOT NULL,
    seq BIGINT NOT NULL,
    owner TEXT,
    lease_until DOUBLE PRECISION,
    outcome TEXT CHECK (outcome IN ('done', 'invalid', 'failed')),
    finished_at DOUBLE PRECISION,
    PRIMARY KEY (dataset, source_path)
);
CREATE INDEX claims_queue ON claims (dataset, outcome, seq);
CREATE INDEX claims_owner ON claims (owner);
CREATE TABLE workers (
    owner TEXT PRIMARY KEY,
    started_at DOUBLE PRECISION NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
);
CREATE TABLE locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lease_until DOUBLE PRECISION NOT NULL
);
CREATE TABLE budgets (
    name TEXT PRIMARY KEY,
    tat DOUBLE PRECISION NOT NULL,
    granted_at DOUBLE PRECISION NOT NULL,
    interval_s DOUBLE PRECISION NOT NULL
)
"""
#: Each version's step from the one before (version 1: everything).
_MIGRATIONS = {
    0: _SCHEMA,
    1: "ALTER TABLE files ADD COLUMN etag TEXT;",
    2: "ALTER TABLE workers ADD COLUMN gone_at DOUBLE PRECISION;",
}


@functools.lru_cache(maxsize=256)
def _psycopg_sql(sql: str) -> str:
    """The ledger's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Connection:
    """The :class:`~batchload.state.sqlstore.Db` calls over one psycopg connection."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self.connection.execute(_psycopg_sql(sql), list(map(to_db, params)))
        return [tuple(map(from_db, row)) for row in cursor.fetchall()]

    def records(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.connection.execute(_psycopg_sql(sql), list(map(to_db, params)))
        names = [d.name for d in cursor.description or ()]
        return [dict(zip(names, map(from_db, row), strict=True)) for row in cursor.fetchall()]

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.connection.execute(_psycopg_sql(sql), list(map(to_db, params)))

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [list(map(to_db, row)) for row in rows]
        if rows:
            with self.connection.cursor() as cursor:
                cursor.executemany(_psycopg_sql(sql), rows)


class PostgresLedger(SqlLedger):
    """A ledger in a PostgreSQL database, through a small pool of connections."""

    NOW = "EXTRACT(EPOCH FROM statement_timestamp())::float8"
    GREATEST = "GREATEST"
    LEAST = "LEAST"
    FOR_UPDATE = " FOR UPDATE"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, pool: psycopg_pool.ConnectionPool[Any]) -> None:
        super().__init__()
        self.location = redact(url)
        self._pool = pool

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> PostgresLedger:
        """Connect, and create or upgrade the tables (with ``create``) on first use."""
        shown = redact(url)
        if psycopg is None or psycopg_pool is None:
            raise UsageError(
                f"the manifest {shown} is in PostgreSQL, which needs psycopg",
                hint="pip install 'batchload[postgres]'",
            )
        try:  # one plain connection first: its error says why (the pool's only times out)
            with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
                _prepare_schema(conn, shown, create=create)
        except psycopg.Error as exc:
            raise LedgerError(
                f"cannot use the ledger at {shown}: {redact(str(exc)).strip()}"
            ) from None
        pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            open=False,
        )
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        return cls(url, pool)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresLedger:
        return self

    @contextmanager
    def _reading(self) -> Iterator[_Connection]:
        with self._errors(), self._pool.connection() as conn:
            yield _Connection(conn)

    @contextmanager
    def _writing(self) -> Iterator[_Connection]:
        with self._errors(), self._pool.connection() as conn, conn.transaction():
            yield _Connection(conn)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """psycopg's and the pool's errors as a :class:`LedgerError`, password redacted."""
        try:
            yield
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise LedgerError(
                f"lost the ledger at {self.location}: {redact(str(exc)).strip()}"
            ) from None


def _prepare_schema(conn: psycopg.Connection[Any], shown: str, *, create: bool) -> None:
    """Create or upgrade the tables once, whoever else starts at the same moment."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS batchload_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        row = conn.execute(
            "SELECT value FROM batchload_meta WHERE key = 'schema_version'"
        ).fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise UsageError(
                f"the ledger at {shown} was made by a newer batchload (schema v{version}; "
                f"this one knows v{SCHEMA_VERSION})",
                hint="upgrade batchload on this machine",
            )
        if version == SCHEMA_VERSION:
            return
        if not create:
            raise UsageError(f"no batchload ledger at {shown}")
        for step in range(version, SCHEMA_VERSION):
            for statement in _MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(
            "INSERT INTO batchload_meta (key, value) VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
