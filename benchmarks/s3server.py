"""moto's S3 server in a child Python process on 127.0.0.1, an ephemeral port: the object
benchmark's store (:mod:`benchmarks.objects`) and the tests' ``s3_server`` fixture.

A child, not a thread: its state cannot be reset by an in-process ``mock_aws``, and a
client call that holds the GIL cannot starve it. Readiness is polled (an HTTP request)
against a deadline; the interval between polls is a ``wait`` on the child itself, so a
child that dies is seen at once instead of after the deadline.
"""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.services import (
    POLL_INTERVAL_S,
    START_TIMEOUT_S,
    ServiceError,
    env_without_proxies,
    log_tail,
)

S3_ACCESS_KEY = "test"
S3_SECRET_KEY = "test"
S3_REGION = "us-east-1"

# Runs in the child: moto's own threaded WSGI server, port 0, the real port on stdout.
# The child exits when its stdin closes, so a killed pytest never leaves it behind. An
# audit hook refuses any DNS lookup or connection that is not to loopback. Every request
# waits ``latency`` before it is answered, as a remote store's would (argv[1] in ms, then
# ``PUT /_knobs``), and the most GETs seen at once are counted (``GET /_knobs``).
_MOTO_CHILD = """
import json, logging, os, sys, threading, time

def loopback_only(event, args):  # moto must never reach the internet (IMDS, DNS, AWS)
    if event == "socket.getaddrinfo" and args[0] not in (None, "127.0.0.1", "localhost"):
        raise PermissionError(f"test S3 server: no lookup of {args[0]!r}")
    if event == "socket.connect" and isinstance(args[1], tuple):
        if args[1][0] not in ("127.0.0.1", "localhost"):
            raise PermissionError(f"test S3 server: no connection to {args[1]!r}")

sys.addaudithook(loopback_only)
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
answer = server._server.app
knobs = {"latency_s": float(sys.argv[1]) / 1000, "gets": 0, "peak_gets": 0}
lock = threading.Lock()

def with_knobs(environ, start_response):
    get = environ["REQUEST_METHOD"] == "GET"
    if environ["PATH_INFO"] == "/_knobs":  # no bucket name starts with "_"
        if not get:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            asked = json.loads(environ["wsgi.input"].read(size))
            with lock:
                knobs.update(latency_s=asked["latency_ms"] / 1000, peak_gets=0)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"peak_gets": knobs["peak_gets"]}).encode()]
    with lock:
        knobs["gets"] += get
        knobs["peak_gets"] = max(knobs["peak_gets"], knobs["gets"])
    try:
        time.sleep(knobs["latency_s"])
        return answer(environ, start_response)
    finally:
        with lock:
            knobs["gets"] -= get

server._server.app = with_knobs
print("moto listening on", server.get_host_and_port()[1], flush=True)
os.dup2(2, 1)  # nothing more on the pipe nobody reads any more
sys.stdin.read()
server.stop()
"""
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_MOTO_LISTENING = re.compile(r"^moto listening on (\d+)$")


@dataclass(kw_only=True)
class S3Server:
    """A running moto server; ``env`` is what a client (obstore, boto3, a child) needs."""

    log_path: Path
    latency_ms: float = 0.0
    """How long each request waits before it is answered (a remote store's latency)."""
    endpoint_url: str = ""
    proc: subprocess.Popen[bytes] | None = None
    startup_s: float = 0.0
    _boto: Any = None

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_REGION": S3_REGION,
            "AWS_DEFAULT_REGION": S3_REGION,
            "AWS_ALLOW_HTTP": "true",
            # No instance-metadata lookups (169.254.169.254) from boto or obstore.
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def store(self, bucket: str, **config: Any) -> Any:
        """An ``obstore`` ``S3Store`` for ``bucket``, configured explicitly (not from env)."""
        from obstore.store import S3Store

        return S3Store(
            bucket,
            endpoint=self.endpoint_url,
            access_key_id=S3_ACCESS_KEY,
            secret_access_key=S3_SECRET_KEY,
            region=S3_REGION,
            client_options={"allow_http": True},
            **config,
        )

    @contextlib.contextmanager
    def latency(self, ms: float) -> Iterator[None]:
        """Every request waits ``ms`` before it is answered, until the block ends; the
        count of GETs at once (:meth:`peak_gets`) starts again."""
        self._knobs({"latency_ms": ms})
        try:
            yield
        finally:
            self._knobs({"latency_ms": self.latency_ms})

    def peak_gets(self) -> int:
        """The most GET requests the server has been answering at once."""
        return int(self._knobs(None)["peak_gets"])

    def _knobs(self, asked: dict[str, float] | None) -> dict[str, Any]:
        data = None if asked is None else json.dumps(asked).encode()
        request = urllib.request.Request(
            self.endpoint_url + "/_knobs", data=data, method="PUT" if data else "GET"
        )
        with _NO_PROXY_OPENER.open(request, timeout=10) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
        return answer

    def create_bucket(self, name: str, *, versioned: bool = False) -> str:
        """CreateBucket through boto3 (moto's own dependency; obstore cannot create buckets)."""
        if self._boto is None:
            import boto3

            self._boto = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=S3_ACCESS_KEY,
                aws_secret_access_key=S3_SECRET_KEY,
                region_name=S3_REGION,
            )
        self._boto.create_bucket(Bucket=name)
        if versioned:
            self._boto.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": "Enabled"}
            )
        return name

    def start(self) -> S3Server:
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _MOTO_CHILD, str(self.latency_ms)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env_without_proxies(**self.env),
            )
        port = self._read_port()
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self._wait_ready()
        self.startup_s = time.monotonic() - t0
        return self

    def _read_port(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while (remaining := deadline - time.monotonic()) > 0:
                if not sel.select(remaining):
                    break
                line = self.proc.stdout.readline().decode(errors="replace").strip()
                if not line:  # EOF: the child died
                    break
                if match := _MOTO_LISTENING.match(line):
                    return int(match.group(1))
        self.stop()
        raise ServiceError(f"moto server did not start:\n{log_tail(self.log_path)}")

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:  # ListBuckets, unsigned: moto answers once its WSGI app serves
                with _NO_PROXY_OPENER.open(self.endpoint_url + "/", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                error: object = exc
            try:
                code = self.proc.wait(timeout=POLL_INTERVAL_S)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None or time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"moto server not ready ({code=}, {error}):\n{log_tail(self.log_path)}"
                )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        proc.terminate()  # nothing to keep; a graceful shutdown costs werkzeug's 0.5 s poll
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_s3(log_dir: Path, *, latency_ms: float = 0.0) -> S3Server:
    """Start moto's S3 server on 127.0.0.1; ``ServiceError`` if it does not come up."""
    return S3Server(log_path=log_dir / "moto.log", latency_ms=latency_ms).start()
