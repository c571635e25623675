"""Configuration, resolved once: flags over environment over defaults.

This is the only module that reads ``os.environ``. The token is wrapped in
:class:`Secret` as soon as it is read, so it cannot reach a log line, a traceback,
the manifest or ``--json`` output by accident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from batchload.errors import ConfigError

TOKEN_ENV = "SIGTECH_PLATFORM_TOKEN"
ENDPOINT_ENV = "BATCHLOAD_ENDPOINT"
SERVER_TOKENS_ENV = "BATCHLOAD_SERVER_TOKENS"
MANIFEST_ENV = "BATCHLOAD_MANIFEST"
DEFAULT_ENDPOINT = "https://api.sigtech.com"
DEFAULT_TIMEOUT_S = 300.0
"""Longest silence while waiting for an answer (the service parses the file first)."""
DEFAULT_MAX_CONCURRENCY = 128
"""Requests in flight at most, by default: the cap the adaptive limit grows to."""
START_CONCURRENCY = 8
"""Requests in flight when a run starts; the limit adapts from there. As many as the
thread pool of 8 a user would write (and about TCP's initial window of 10 segments):
fewer would only be slower for the first round trips."""


class Secret:
    """A string that never shows itself: ``str``, ``repr`` and f-strings give ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that needs it (the Authorization header)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """Where and how the client talks to the ingestion API."""

    endpoint: str
    token: Secret | None
    ca_bundle: Path | None = None
    verify_tls: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    """Longest wait for the next byte of an answer; then the request is retried."""

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout must be positive, not {self.timeout_s:g} s")


def resolve_endpoint(flag: str | None) -> str:
    """``--endpoint``, else ``BATCHLOAD_ENDPOINT``, else the real API; checked for shape."""
    endpoint = (flag or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).strip().rstrip("/")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"endpoint {endpoint!r} is not an http(s) URL",
            hint="pass --endpoint http://HOST:PORT or set BATCHLOAD_ENDPOINT",
        )
    return endpoint


def resolve_token(token_file: Path | None, *, required: bool = True) -> Secret | None:
    """``--token-file``, else ``SIGTECH_PLATFORM_TOKEN``; never a command-line value."""
    if token_file is not None:
        try:
            value = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token file {token_file}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"token file {token_file} is empty")
        return Secret(value)
    value = os.environ.get(TOKEN_ENV, "").strip()
    if value:
        return Secret(value)
    if required:
        raise ConfigError(
            f"no API token: set {TOKEN_ENV} or pass --token-file PATH",
            hint="create a token in the SigTech platform under Access Tokens",
        )
    return None


def client_config(
    *,
    endpoint: str | None,
    token_file: Path | None,
    ca_bundle: Path | None = None,
    insecure: bool = False,
    token_required: bool = True,
    timeout_s: float | None = None,
) -> ClientConfig:
    """Resolve everything the transport needs, once, at the edge of a command."""
    if ca_bundle is not None and not ca_bundle.is_file():
        raise ConfigError(f"CA bundle {ca_bundle} does not exist")
    return ClientConfig(
        endpoint=resolve_endpoint(endpoint),
        token=resolve_token(token_file, required=token_required),
        ca_bundle=ca_bundle,
        verify_tls=not insecure,
        timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
    )


def resolve_manifest(flag: str | Path | None) -> str | Path | None:
    """``--manifest``, else ``BATCHLOAD_MANIFEST`` (a path, or a ``postgresql://`` URL)."""
    return flag or os.environ.get(MANIFEST_ENV, "").strip() or None


def server_tokens(flags: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Tokens the local server accepts: ``--token`` flags plus ``BATCHLOAD_SERVER_TOKENS``."""
    from_env = [t.strip() for t in os.environ.get(SERVER_TOKENS_ENV, "").split(",")]
    return tuple(dict.fromkeys(t for t in [*flags, *from_env] if t))


OBJECT_READ_TIMEOUT = "600s"
"""Longest a whole GET of an object may take (obstore's default, 30 s, cuts large ones)."""


def object_client_options() -> dict[str, str | bool]:
    """Client options for object stores: a longer read timeout, and ``AWS_ALLOW_HTTP``
    kept (obstore takes it from the environment only when no options are given). The
    rest of each store's configuration and credentials obstore reads itself."""
    options: dict[str, str | bool] = {"timeout": OBJECT_READ_TIMEOUT}
    if os.environ.get("AWS_ALLOW_HTTP", "").strip().lower() in ("1", "true", "yes"):
        options["allow_http"] = True
    return options


def cpu_count() -> int:
    """CPUs this process may use (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)
