"""Real PostgreSQL and S3 (moto) servers for the test suite, on 127.0.0.1 only.

The fixtures in ``conftest.py`` are thin wrappers over this module:

* :func:`start_postgres` runs ``initdb`` and ``postgres`` from the machine's binaries
  (``PATH``, then the newest ``/usr/lib/postgresql/*/bin``). ``initdb`` refuses root, so
  as root both run as ``nobody`` through ``setpriv``; the data directory and the Unix
  socket live in a temporary directory (on /dev/shm when it is big enough) owned by
  that user. Superuser ``postgres``, trust authentication, TCP on 127.0.0.1 only.
* :func:`start_s3` runs moto's S3 server in a child Python process on an ephemeral port
  (it lives in :mod:`benchmarks.s3server`, which the object benchmark starts too).

Readiness is always polled (a connection, an HTTP request) against a deadline; the
interval between polls is a ``wait`` on the child itself, so a child that dies is seen
at once instead of after the deadline.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.s3server import (
    POLL_INTERVAL_S,
    START_TIMEOUT_S,
    S3Server,
    ServiceError,
    env_without_proxies,
    log_tail,
    start_s3,
)

PG_SUPERUSER = "postgres"
UNPRIVILEGED_USER = "nobody"
PG_BINARIES = ("initdb", "pg_ctl", "postgres")
PG_MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in PATH or "
    "/usr/lib/postgresql/*/bin. Install them: apt-get install -y --no-install-recommends "
    "postgresql (Debian's package; .ci/run does this when they are missing)."
)
__all__ = [
    "PostgresServer",
    "S3Server",
    "ServiceError",
    "find_pg_bindir",
    "start_postgres",
    "start_s3",
]


# --------------------------------------------------------------------------- PostgreSQL


def find_pg_bindir(versions_root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``; ``ServiceError`` if none.

    ``PATH`` first, then the newest ``<versions_root>/<version>/bin`` (Debian's layout).
    """
    initdb = shutil.which("initdb")
    if initdb:
        bindir = Path(initdb).resolve().parent
        if all((bindir / name).is_file() for name in PG_BINARIES):
            return bindir

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates = sorted(versions_root.glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if all((bindir / name).is_file() for name in PG_BINARIES):
            return bindir
    raise ServiceError(PG_MISSING)


def _free_port() -> int:
    """A port free on 127.0.0.1 right now (postgres cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _world_traversable(path: Path) -> bool:
    """Whether every directory above ``path`` lets other users through (mode o+x)."""
    return all(os.stat(parent).st_mode & 0o001 for parent in path.resolve().parents)


@dataclass(kw_only=True)
class PostgresServer:
    """A running ``postgres``; :meth:`stop` it (the fixture does)."""

    bindir: Path
    base_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    user: str = PG_SUPERUSER
    os_user: str = ""
    """The OS account the server runs as (``nobody`` when the tests run as root)."""
    proc: subprocess.Popen[bytes] | None = None
    startup_s: float = 0.0
    version_num: int = 0
    """``server_version_num``, e.g. 150014."""
    _as_user: list[str] = field(default_factory=list)
    """Prefix of every command: setpriv (parent-death signal; as root, drop to nobody)."""

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "run"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        """An autocommit psycopg connection as the superuser."""
        import psycopg

        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 5)
        return psycopg.connect(self.url(dbname), **kwargs)

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A fresh empty database for one test; dropped (``WITH (FORCE)``) afterwards."""
        name = f"t_{uuid.uuid4().hex}"
        # FILE_COPY (15+): a plain copy of template1; here 8 ms against 15 ms for WAL_LOG.
        strategy = " STRATEGY FILE_COPY" if self.version_num >= 150000 else ""
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"{strategy}')
        try:
            yield name
        finally:
            with self.connect() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_user, *argv],
            capture_output=True,
            text=True,
            env=env_without_proxies(LC_ALL="C", LANG="C"),
            stdin=subprocess.DEVNULL,
            timeout=START_TIMEOUT_S,
        )

    def start(self) -> PostgresServer:
        t0 = time.monotonic()
        setpriv = shutil.which("setpriv")
        if setpriv:  # postgres gets SIGQUIT (immediate shutdown) if pytest is killed
            self._as_user = [setpriv, "--pdeathsig", "SIGQUIT"]
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root.
            if not setpriv:
                raise ServiceError("running as root needs setpriv (util-linux) to drop to nobody")
            account = pwd.getpwnam(UNPRIVILEGED_USER)
            self.os_user = UNPRIVILEGED_USER
            self._as_user += [
                f"--reuid={account.pw_uid}",
                f"--regid={account.pw_gid}",
                "--clear-groups",
            ]
            os.chown(self.base_dir, account.pw_uid, account.pw_gid)
        else:
            self.os_user = pwd.getpwuid(os.geteuid()).pw_name
        if self._as_user:
            self._as_user.append("--")
        os.chmod(self.base_dir, 0o700)
        for directory in (self.data_dir, self.socket_dir):
            self._run("mkdir", "-m", "0700", str(directory)).check_returncode()

        done = self._run(
            str(self.bindir / "initdb"),
            "--pgdata",
            str(self.data_dir),
            "--username",
            self.user,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        )
        if done.returncode != 0:
            raise ServiceError(f"initdb failed ({done.returncode}):\n{done.stderr[-4000:]}")

        # The port is chosen free, then bound by postgres: a rare race, hence the retries.
        last_error = ""
        for _ in range(3):
            self.port = _free_port()
            try:
                self._spawn_and_wait()
            except ServiceError as exc:
                last_error = str(exc)
                if "could not bind" not in last_error and "in use" not in last_error:
                    raise
                continue
            self.startup_s = time.monotonic() - t0
            return self
        raise ServiceError(last_error)

    def _spawn_and_wait(self) -> None:
        options = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "logging_collector": "off",
        }
        argv = [*self._as_user, str(self.bindir / "postgres"), "-D", str(self.data_dir)]
        for key, value in options.items():
            argv += ["-c", f"{key}={value}"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env_without_proxies(LC_ALL="C", LANG="C"),
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2) as conn:
                    self.version_num = conn.info.server_version
                return
            except psycopg.OperationalError as exc:
                error = exc
            try:  # the interval between polls, cut short if postgres exits
                code = self.proc.wait(timeout=POLL_INTERVAL_S)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None:
                self.proc = None
                raise ServiceError(
                    f"postgres exited with {code} during start-up:\n{log_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"postgres not ready after {START_TIMEOUT_S} s ({error}):\n"
                    f"{log_tail(self.log_path)}"
                )

    def stop(self) -> None:
        """Immediate shutdown (nothing to keep), then remove the whole directory."""
        if self.proc is not None and self.proc.poll() is None:
            self._run(
                str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate"
            )
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.base_dir, ignore_errors=True)


PG_MIN_FREE_BYTES = 512 * 1024 * 1024


def _pg_parent_dir() -> Path:
    """Where the cluster goes: tmpfs if big enough, else the temporary directory.

    On this kind of machine CREATE DATABASE takes 10 ms on /dev/shm against 200-450 ms
    on disk, even with fsync off. Docker's default /dev/shm (64 MB) is too small, hence
    the free-space check. As root the directory must let ``nobody`` through.
    """
    for candidate in (Path("/dev/shm"), Path(tempfile.gettempdir()), Path("/tmp")):
        try:
            usable = (
                candidate.is_dir()
                and os.access(candidate, os.W_OK | os.X_OK)
                and shutil.disk_usage(candidate).free >= PG_MIN_FREE_BYTES
                and (os.geteuid() != 0 or _world_traversable(candidate / "x"))
            )
        except OSError:
            usable = False
        if usable:
            return candidate
    return Path(tempfile.gettempdir())


def start_postgres() -> PostgresServer:
    """Start a throw-away PostgreSQL cluster on 127.0.0.1; ``ServiceError`` if impossible."""
    bindir = find_pg_bindir()
    base_dir = Path(tempfile.mkdtemp(prefix="batchload-pg-", dir=_pg_parent_dir()))
    server = PostgresServer(bindir=bindir, base_dir=base_dir)
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise
