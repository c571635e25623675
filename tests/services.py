"""Real PostgreSQL and S3 (moto) servers for the test suite, on 127.0.0.1 only.

The fixtures in ``conftest.py`` are thin wrappers over this module, which takes both
servers from ``benchmarks/`` (the benchmarks start the same ones):

* :func:`start_postgres` (:mod:`benchmarks.services`) runs ``initdb`` and ``postgres``
  from the machine's binaries, as ``nobody`` when run as root, superuser ``postgres``,
  trust authentication, TCP on 127.0.0.1 only.
* :func:`start_s3` (:mod:`benchmarks.s3server`) runs moto's S3 server in a child Python
  process on an ephemeral port. A child, not a thread in the pytest process: its state
  cannot be reset by an in-process ``mock_aws``, and a client call that holds the GIL
  cannot starve it.

Readiness is always polled against a deadline, never waited for by sleeping.
"""

from __future__ import annotations

from benchmarks.s3server import S3Server, start_s3
from benchmarks.services import (
    PG_BINARIES,
    PostgresServer,
    ServiceError,
    find_pg_bindir,
    start_postgres,
)

__all__ = [
    "PG_BINARIES",
    "PostgresServer",
    "S3Server",
    "ServiceError",
    "find_pg_bindir",
    "start_postgres",
    "start_s3",
]
