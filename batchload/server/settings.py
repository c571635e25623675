"""The local server's configuration, resolved once by the CLI into a frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batchload.server.faults import FaultSettings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_DATA_DIR = Path(".batchload/server")
DEFAULT_MAX_BODY_MB = 64.0  # MiB of request body, base64 and JSON included
DEFAULT_READ_TIMEOUT_S = 60.0  # longest wait for the next piece of a request body
SHUTDOWN_TIMEOUT_S = 5.0  # in-flight requests get this long after SIGTERM


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Everything ``batchload serve`` was asked for."""

    data_dir: Path = DEFAULT_DATA_DIR
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tokens: tuple[str, ...] = ()
    auth: bool = True
    max_body_bytes: int = int(DEFAULT_MAX_BODY_MB * 1024 * 1024)
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    workers: int = 4  # threads decoding, parsing and storing uploads
    faults: FaultSettings = field(default_factory=FaultSettings)
    dataset_put: bool = True
    """Serve ``PUT /ingestion/datasets/{id}`` (off: 405, as a service with only the guide's
    calls would answer, so that a client's fallback can be tried)."""
    tls_cert: Path | None = None  # PEM certificate chain: serve https
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        if self.auth and not self.tokens:
            raise ValueError("no token configured and auth is on")
        if self.max_body_bytes <= 0 or self.read_timeout_s <= 0 or self.workers <= 0:
            raise ValueError("max_body_bytes, read_timeout_s and workers must be positive")
