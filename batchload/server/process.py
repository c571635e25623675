"""Run ``batchload serve`` as a child process: for the demo, the tests and the benchmarks.

The child prints one ``listening`` line with its real port; we read that line, then
poll ``/healthz`` (never sleep-and-hope) until it answers.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from batchload.config import SERVER_TOKENS_ENV
from batchload.errors import ConfigError
from batchload.protocol import HEALTH_PATH

LISTENING_RE = re.compile(r"^batchload serve listening on (https?://\S+)$")
START_TIMEOUT_S = 30.0


@dataclass(kw_only=True)
class ServerProcess:
    """A local ingestion server in a child process; use as a context manager.

    ``knobs`` are extra ``serve`` flags, e.g. ``["--latency-ms", "20"]``. With
    ``tokens_in_env`` the tokens reach the child in ``BATCHLOAD_SERVER_TOKENS``
    instead of ``--token`` flags, so they stay out of the process list.
    """

    data_dir: Path
    tokens: tuple[str, ...] = ("local-token",)
    port: int = 0
    knobs: list[str] = field(default_factory=list)
    tokens_in_env: bool = False
    url: str = ""
    proc: subprocess.Popen[bytes] | None = None
    stderr_path: Path | None = None
    ca_bundle: Path | None = None
    """For https: the CA that signed the server's certificate (the health check verifies it)."""

    def command(self) -> list[str]:
        """The argv that starts this server."""
        argv = [sys.executable, "-m", "batchload", "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        if not self.tokens_in_env:
            for token in self.tokens:
                argv += ["--token", token]
        if not self.tokens:
            argv.append("--no-auth")
        return argv + list(self.knobs)

    def start(self) -> ServerProcess:
        """Start the child and return once ``/healthz`` answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = self.data_dir.parent / f"{self.data_dir.name}.serve.log"
        with open(self.stderr_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=self._env(),
            )
        self.url = self._read_listening_line()
        if self.port == 0:  # keep the port, so a restart comes back on the same address
            self.port = int(self.url.rsplit(":", 1)[1])
        self._wait_healthy()
        return self

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.tokens_in_env:
            env[SERVER_TOKENS_ENV] = ",".join(self.tokens)
        return env

    def _read_listening_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                if not selector.select(timeout=remaining):
                    break
                line = self.proc.stdout.readline().decode("utf-8", "replace").strip()
                if not line:  # EOF: the child exited
                    break
                if match := LISTENING_RE.match(line):
                    return match.group(1)
        finally:
            selector.close()
        self.stop()
        raise ConfigError(f"local server did not start; see {self.stderr_path}")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        delay_s = 0.01
        context = None
        if self.url.startswith("https:"):
            cafile = str(self.ca_bundle) if self.ca_bundle else None
            context = ssl.create_default_context(cafile=cafile)
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    self.url + HEALTH_PATH, timeout=2, context=context
                ) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(delay_s)  # polling a real endpoint with backoff, not waiting blind
            delay_s = min(delay_s * 2, 0.2)
        self.stop()
        raise ConfigError(f"local server at {self.url} never became healthy")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the child (SIGTERM by default, SIGKILL to simulate a crash)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the child: a crash, with no chance to clean up."""
        self.stop(signal.SIGKILL)

    def restart(self) -> ServerProcess:
        """Stop and start again on the same port and data dir."""
        self.stop()
        return self.start()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
