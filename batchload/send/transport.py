"""Transport: the only code in batchload that speaks HTTP.

:class:`IngestionClient` owns one aiohttp session (keep-alive connections, created
inside the running event loop) and turns every aiohttp error and every HTTP status
into the exception tree of :mod:`batchload.errors`, here and nowhere else:

=========================  ============================================================
401, 403                   :class:`AuthError` (the run stops)
408, 429, 5xx              :class:`TransientError` with ``status`` and ``retry_after_s``
413                        :class:`PayloadTooLarge` (send smaller parts)
other 4xx                  :class:`ServiceError` with the service's code and message
refused, DNS, connect      :class:`UnreachableError` (transient)
dropped, read timeout      :class:`TransientError` with ``status=None``
TLS verification           :class:`ConfigError` (point --ca-bundle at the right CA)
=========================  ============================================================

What to retry is the pipeline's decision (see :mod:`batchload.send.retry`); the client
only records the fact it needs, :attr:`IngestionClient.answered` (whether the
service has answered any request yet), so that a wrong endpoint can fail at once
while a service that answered and then went away is waited for. With a shared
request budget (``--max-rps``, :mod:`batchload.send.ratebudget`), every request waits
for its moment in it here, and every 429 is reported to it. The token goes into
the Authorization header and nowhere else: no message, repr or log.
"""

from __future__ import annotations

import json
import ssl
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio

from batchload.config import ClientConfig
from batchload.errors import (
    AuthError,
    ConfigError,
    PayloadTooLarge,
    ServiceError,
    TransientError,
    UnreachableError,
)
from batchload.protocol import DATASETS_PATH
from batchload.send.body import RequestBody
from batchload.send.ratebudget import RateBudget
from batchload.send.retry import parse_retry_after

CONNECT_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 64
USER_AGENT = "batchload/0.1"
_MAX_DETAIL_CHARS = 400


def _path(*parts: str) -> str:
    return DATASETS_PATH + "".join("/" + quote(p, safe="") for p in parts)


class IngestionClient:
    """An async client of the ingestion API; use ``async with IngestionClient(config)``."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        max_connections: int = MAX_CONNECTIONS,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        budget: RateBudget | None = None,
    ) -> None:
        self.config = config
        self.budget = budget
        self.endpoint = config.endpoint.rstrip("/")
        self._max_connections = max_connections
        # sock_read: the longest silence while an answer is awaited (config.timeout_s).
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout_s, sock_read=config.timeout_s
        )
        self._session: aiohttp.ClientSession | None = None
        self.answered = False
        """True once the service has answered any request (any status) through this client."""

    def __repr__(self) -> str:
        return f"IngestionClient(endpoint={self.endpoint!r})"

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.endpoint.startswith("https:"):
            return True
        if not self.config.verify_tls:
            return False
        if self.config.ca_bundle is not None:
            try:
                return ssl.create_default_context(cafile=str(self.config.ca_bundle))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot use CA bundle {self.config.ca_bundle}: {exc}") from None
        return True

    async def __aenter__(self) -> IngestionClient:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token.reveal()}"
        connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl())
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, headers=headers
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            with anyio.CancelScope(shield=True):  # close cleanly even when cancelled
                await self._session.close()
            self._session = None

    # --- the API ---------------------------------------------------------------------

    async def list_datasets(self) -> list[dict[str, Any]]:
        """``GET /ingestion/datasets/``: every dataset, each with at least id and name.

        The API's root listing is never missing, so a 404 here means the endpoint is
        not the API's base URL (a path too many or too few): a ConfigError, not a
        service fault.
        """
        try:
            answer = await self._call("GET", DATASETS_PATH + "/")
        except ServiceError as exc:
            if exc.status != 404:
                raise
            raise ConfigError(
                f"{self.endpoint}{DATASETS_PATH}/ answered 404 Not Found: "
                "is --endpoint the API's base URL?",
                hint="give the URL before /ingestion, e.g. https://api.sigtech.com",
            ) from exc
        items = answer.get("datasets", answer) if isinstance(answer, dict) else answer
        if not isinstance(items, list):
            raise ServiceError("listing datasets gave an answer that is not a list")
        return [item for item in items if isinstance(item, dict)]

    async def get_dataset(self, dataset_id: str) -> dict[str, Any] | None:
        """``GET /ingestion/datasets/{id}``: the dataset with its locked schema, or None (404)."""
        try:
            return _object(await self._call("GET", _path(dataset_id)))
        except ServiceError as exc:
            if exc.status == 404:
                return None
            raise

    async def create_dataset(self, body: RequestBody) -> dict[str, Any]:
        """``POST /ingestion/datasets``: create a dataset from its first file (not idempotent)."""
        return _object(await self._call("POST", DATASETS_PATH, body=body))

    async def create_dataset_with_schema(
        self,
        dataset_id: str,
        *,
        name: str,
        schema: list[dict[str, str]],
        identifier: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``PUT /ingestion/datasets/{id}``: create a dataset with an explicit schema."""
        payload: dict[str, Any] = {"name": name, "schema": schema}
        if identifier is not None:
            payload["identifier"] = identifier
        if tags is not None:
            payload["tags"] = tags
        return _object(await self._call("PUT", _path(dataset_id), json_body=payload))

    async def put_file(self, dataset_id: str, body: RequestBody) -> dict[str, Any]:
        """Add or overwrite a file: ``POST .../{id}/files``; returns the receipt.

        POST is the SDK's call, the one documented with ``read_options`` and
        ``convert_options``; the service answers 201 for a new file_id, 200 for an
        overwrite.
        """
        return _object(await self._call("POST", _path(dataset_id, "files"), body=body))

    async def list_files(self, dataset_id: str) -> dict[str, Any]:
        """``GET .../{id}/files``: ``{"ids": [...]}`` (the local server adds ``files``)."""
        answer = _object(await self._call("GET", _path(dataset_id, "files")))
        if not isinstance(answer.get("ids"), list):
            raise ServiceError("listing files gave an answer without an 'ids' list")
        return answer

    async def delete_file(self, dataset_id: str, file_id: str) -> None:
        """``DELETE .../{id}/files/{file_id}``."""
        await self._call("DELETE", _path(dataset_id, "files", file_id))

    async def delete_dataset(self, dataset_id: str) -> None:
        """``DELETE /ingestion/datasets/{id}``: delete the dataset's files."""
        await self._call("DELETE", _path(dataset_id))

    # --- one request, translated -------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: RequestBody | None = None,
        json_body: object = None,
    ) -> Any:
        if self._session is None:
            raise RuntimeError("use IngestionClient inside 'async with'")
        what = f"{method} {path}"
        headers: dict[str, str] = {}
        data: Any = None
        if body is not None:
            headers = {
                "Content-Type": "application/json",
                "Content-Length": str(body.content_length),
            }
            data = body.inline() or body
        elif json_body is not None:
            headers = {"Content-Type": "application/json"}
            data = json.dumps(json_body).encode("utf-8")
        if self.budget is not None:
            await self.budget.take()
        try:
            async with self._session.request(
                method, self.endpoint + path, data=data, headers=headers
            ) as response:
                self.answered = True
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except aiohttp.ClientError as exc:
            if body is not None and body.problem is not None:
                raise body.problem from exc
            raise _network_error(what, self.endpoint, exc) from exc
        except TimeoutError as exc:
            raise TransientError(f"{what}: no answer in time") from exc
        if body is not None and body.problem is not None:
            raise body.problem
        if 200 <= status < 300:
            return _json(raw) if raw else {}
        if status == 429 and self.budget is not None:
            await self.budget.throttled(parse_retry_after(retry_after))
        raise _status_error(what, status, _json(raw), parse_retry_after(retry_after))


def _object(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise ServiceError("the service answered with JSON that is not an object")
    return answer


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return {"error": {"message": raw[:_MAX_DETAIL_CHARS].decode("utf-8", "replace")}}


def _network_error(what: str, endpoint: str, exc: aiohttp.ClientError) -> Exception:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ConfigError(
            f"TLS certificate of {endpoint} not trusted: {exc.certificate_error}",
            hint="pass --ca-bundle PATH for a private CA",
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return ConfigError(f"TLS handshake with {endpoint} failed: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        reason = exc.strerror if isinstance(exc, aiohttp.ClientConnectorError) else None
        return UnreachableError(
            f"cannot reach {endpoint}: {reason or type(exc).__name__}",
            hint="check --endpoint and that the service is up",
        )
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return TransientError(f"{what}: no answer in time")
    return TransientError(f"{what}: connection lost ({type(exc).__name__})")


def _status_error(what: str, status: int, answer: Any, retry_after_s: float | None) -> Exception:
    error = answer.get("error") if isinstance(answer, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = str(error.get("message") or f"HTTP {status}")
    details = error.get("details")
    text = f"{what}: {status} {code + ': ' if code else ''}{message}"
    if details:
        rendered = json.dumps(details, default=str)
        if len(rendered) > _MAX_DETAIL_CHARS:
            rendered = rendered[:_MAX_DETAIL_CHARS] + "..."
        text += f" {rendered}"
    if status in (401, 403):
        return AuthError(text, status=status, hint="check $SIGTECH_PLATFORM_TOKEN or --token-file")
    if status == 413:
        return PayloadTooLarge(text, status=status, code=code, details=details)
    if status in (408, 429) or status >= 500:
        return TransientError(
            text, status=status, retry_after_s=retry_after_s, code=code, details=details
        )
    return ServiceError(text, status=status, code=code, details=details)
