"""The local ingestion server's aiohttp application: routes, handlers and middleware.

Requests pass three middlewares, outermost first:

- errors: every refusal becomes ``{"error": {"code", "message", "details"}}``;
- auth: ``/ingestion/...`` and ``/admin/...`` need an accepted bearer token (401);
- faults: ``/ingestion/...`` only: rate limit (429), fail rate (503), drop rate,
  latency and latency spikes (see :mod:`batchload.server.faults`); the slow create is
  in the two create handlers, before anything is stored. Each ingestion request's
  arrival time is kept (the last ``REQUEST_LOG_SIZE``) and listed by
  ``GET /admin/requests``, so a test can measure a client's rate at the server.

The event loop only moves bytes: a body is read into one preallocated buffer (the
413 limit enforced while reading, so a huge declared length is refused before any
of it is read) and handed to :mod:`batchload.server.ingest`, which decodes, parses,
checks and stores it on the ingest thread pool. Metadata calls use a second, small
pool so that they never queue behind big uploads.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import HttpVersion11, web

from batchload.protocol import DATASETS_PATH, HEALTH_PATH, ErrorCode
from batchload.schemadiff import schema_to_json
from batchload.server import ingest
from batchload.server.auth import TokenGate, bearer_token
from batchload.server.body import check_id
from batchload.server.errors import ApiError, bad_request, not_found
from batchload.server.faults import Faults
from batchload.server.settings import ServerSettings
from batchload.server.store import DatasetNotFound, Store

REVOKE_PATH = "/admin/revoke"
REQUESTS_PATH = "/admin/requests"
REQUEST_LOG_SIZE = 100_000
_META_WORKERS = 2
MIN_BODY_RATE_BPS = 16 * 1024
"""A body must arrive at this average rate (after --read-timeout-s of grace), so a client
that trickles a byte now and then cannot hold a request open for ever (slowloris)."""

log = logging.getLogger("batchload.server")
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS_CODES: dict[int, ErrorCode] = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_format",
}


@dataclass(frozen=True, slots=True)
class ServerState:
    """What the handlers share: settings, storage, the token gate, faults, thread pools."""

    settings: ServerSettings
    store: Store
    gate: TokenGate
    faults: Faults
    ingest_pool: ThreadPoolExecutor
    meta_pool: ThreadPoolExecutor
    arrivals: collections.deque[float]
    """Epoch seconds at which each recent ingestion request arrived."""

    async def meta(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a metadata call on the small metadata pool."""
        return await asyncio.get_running_loop().run_in_executor(self.meta_pool, fn, *args)


STATE = web.AppKey("batchload_server_state", ServerState)


def make_app(settings: ServerSettings, store: Store) -> web.Application:
    """The application over ``store``; thread pools are shut down on cleanup."""
    state = ServerState(
        settings=settings,
        store=store,
        gate=TokenGate(settings.tokens, required=settings.auth),
        faults=Faults(settings.faults),
        ingest_pool=ThreadPoolExecutor(settings.workers, thread_name_prefix="ingest"),
        meta_pool=ThreadPoolExecutor(_META_WORKERS, thread_name_prefix="meta"),
        arrivals=collections.deque(maxlen=REQUEST_LOG_SIZE),
    )
    app = web.Application(
        middlewares=[error_middleware, auth_middleware, fault_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[STATE] = state
    datasets, dataset = DATASETS_PATH, DATASETS_PATH + "/{id}"
    for method, path, handler in [
        ("GET", HEALTH_PATH, health),
        ("POST", REVOKE_PATH, revoke),
        ("GET", REQUESTS_PATH, list_requests),
        ("GET", datasets, list_datasets),
        ("GET", datasets + "/", list_datasets),
        ("POST", datasets, create_from_file),
        ("POST", datasets + "/", create_from_file),
        ("GET", dataset, get_dataset),
        *([("PUT", dataset, put_dataset)] if settings.dataset_put else []),
        ("DELETE", dataset, delete_dataset),
        ("GET", dataset + "/files", list_files),
        ("PUT", dataset + "/files", add_file),
        ("POST", dataset + "/files", add_file),
        ("DELETE", dataset + "/files/{file_id}", delete_file),
    ]:
        app.router.add_route(method, path, handler, expect_handler=expect_handler)
        if method == "GET":
            app.router.add_route("HEAD", path, handler, expect_handler=expect_handler)

    async def shut_down_pools(_: web.Application) -> None:
        for pool in (state.ingest_pool, state.meta_pool):
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    app.on_cleanup.append(shut_down_pools)
    return app


async def expect_handler(request: web.Request) -> None:
    """aiohttp's own ``Expect`` handling, except that a value it does not know is a 417
    whatever its bytes: aiohttp's answered 500 when the value was not UTF-8.

    The interim ``100 Continue`` goes straight to the transport: through the response's
    writer it would count as the answer's own bytes (aiohttp's handler then resets
    the writer's undocumented byte count; this one has nothing to undo)."""
    if request.version != HttpVersion11:
        return
    if request.headers.get("Expect", "").lower() == "100-continue":
        transport = request.transport
        if transport is not None and not transport.is_closing():
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return
    raise web.HTTPExpectationFailed(text="unsupported Expect header (only 100-continue is)")


# --- middleware ----------------------------------------------------------------------


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every refusal, routing error and crash into the contract's error JSON."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, "bad_request" if exc.status < 500 else "internal")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        message = f"{exc.reason}: {request.method} {request.path}"
        return error_response(ApiError(exc.status, code, message, headers=headers))
    except Exception:
        log.exception("internal error in %s %s", request.method, request.path)
        return error_response(ApiError(500, "internal", "internal server error"))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 unless an accepted bearer token comes with an ingestion or admin request."""
    if request.path.startswith((DATASETS_PATH, "/admin/")):
        token = bearer_token(request.headers.get("Authorization"))
        if not request.app[STATE].gate.allows(token):
            raise ApiError(
                401,
                "unauthorized",
                "missing bearer token" if token is None else "unknown or revoked token",
                headers={"WWW-Authenticate": 'Bearer realm="batchload"'},
            )
    return await handler(request)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inject the configured faults into ingestion requests (never /healthz or /admin)."""
    if not request.path.startswith(DATASETS_PATH):
        return await handler(request)
    request.app[STATE].arrivals.append(time.time())
    faults = request.app[STATE].faults
    try:
        if (retry_after := faults.retry_after_s()) is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"over the rate limit of {faults.settings.rate_limit:g} requests per second",
                details={"retry_after_s": retry_after},
                headers={"Retry-After": str(retry_after)},
            )
        if faults.should_fail():
            raise ApiError(503, "unavailable", "injected failure (--fail-rate); try again")
        response = await handler(request)
        if response.status < 400 and faults.should_drop():
            log.info("dropping the connection after answering (--drop-rate)")
            if request.transport is not None:
                request.transport.abort()
    except ApiError as exc:
        response = error_response(exc)
    delay_s = faults.latency_s
    if spike_s := faults.spike_s():
        log.info("delaying the answer by %g ms (--spike-rate)", spike_s * 1000)
        delay_s += spike_s
    if delay_s:
        await asyncio.sleep(delay_s)  # an injected delay, not a wait for anything
    return response


def error_response(error: ApiError) -> web.Response:
    """The JSON answer for ``error``; 408 and 413 also close the connection."""
    response = web.json_response(error.payload(), status=error.status, headers=error.headers)
    if error.status in (408, 413):
        response.force_close()
    return response


# --- body ----------------------------------------------------------------------------


async def read_body(request: web.Request) -> bytearray:
    """The whole body in one buffer; 413 over the limit (checked before and while reading).

    With a Content-Length the buffer is allocated once and filled in place, so a
    133 MB body is copied once, chunk by chunk, and never joined.
    """
    settings = request.app[STATE].settings
    limit = settings.max_body_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(declared, limit)
    body = bytearray(declared or 0)
    size = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        # Wait at most read_timeout_s for the next piece, and never past the deadline
        # that MIN_BODY_RATE_BPS sets for the whole body (declared, or read so far).
        deadline = started + settings.read_timeout_s + (declared or size) / MIN_BODY_RATE_BPS
        wait_s = min(settings.read_timeout_s, deadline - loop.time())
        try:
            if wait_s <= 0:
                raise TimeoutError
            async with asyncio.timeout(wait_s):
                chunk = await request.content.readany()
        except TimeoutError:
            raise ApiError(
                408,
                "request_timeout",
                f"request body too slow: no data for {settings.read_timeout_s:g} s, or "
                f"slower than {MIN_BODY_RATE_BPS // 1024} KiB/s on average",
            ) from None
        if not chunk:
            break
        end = size + len(chunk)
        if end > limit:
            raise _too_large(end, limit)
        if end <= len(body):
            body[size:end] = chunk
        else:
            del body[size:]
            body += chunk
        size = end
    del body[size:]
    return body


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"request body of {size} bytes or more is over the limit of {limit} bytes",
        details={"limit_bytes": limit},
    )


def _path_id(request: web.Request, key: str) -> str:
    return check_id(request.match_info[key], "dataset id" if key == "id" else key)


# --- handlers ------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 when serving; no auth, no faults."""
    return web.json_response({"status": "ok"})


async def revoke(request: web.Request) -> web.Response:
    """``POST /admin/revoke``: the calling token stops working until a restart."""
    state = request.app[STATE]
    token = bearer_token(request.headers.get("Authorization"))
    if not state.gate.required or token is None:
        raise bad_request("authentication is off (--no-auth): there is no token to revoke")
    state.gate.revoke(token)
    log.info("a token was revoked")
    return web.json_response({"revoked": True})


async def list_requests(request: web.Request) -> web.Response:
    """``GET /admin/requests``: arrival times (epoch seconds) of recent ingestion requests."""
    return web.json_response({"times": list(request.app[STATE].arrivals)})


async def list_datasets(request: web.Request) -> web.Response:
    state = request.app[STATE]
    records = await state.meta(state.store.list_datasets)
    return web.json_response([record.to_json() for record in records])


async def get_dataset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    dataset_id = _path_id(request, "id")
    record = await state.meta(state.store.get_dataset, dataset_id)
    if record is None:
        raise not_found(f"dataset {dataset_id!r} does not exist")
    return web.json_response(record.to_json())


async def create_from_file(request: web.Request) -> web.Response:
    """``POST /ingestion/datasets``: a new dataset from its first file."""
    state = request.app[STATE]
    body = await read_body(request)
    await _slow_create(state)
    # The body is not kept here: ingest frees it as soon as the file is decoded.
    dataset, file = await ingest.create_from_file(state.store, state.ingest_pool, body)
    answer = {**file.to_json(), "name": dataset.name, "schema": schema_to_json(dataset.schema)}
    return web.json_response(answer, status=201)


async def add_file(request: web.Request) -> web.Response:
    """``PUT|POST /ingestion/datasets/{id}/files``: 201 new, 200 overwritten."""
    state = request.app[STATE]
    dataset_id = _path_id(request, "id")
    locked = await state.meta(state.store.locked_schema, dataset_id)
    if locked is None:  # before reading the body
        raise not_found(f"dataset {dataset_id!r} does not exist")
    file, overwritten = await ingest.add_file(
        state.store, state.ingest_pool, dataset_id, locked, await read_body(request)
    )
    answer = {**file.to_json(), "overwritten": overwritten}
    return web.json_response(answer, status=200 if overwritten else 201)


async def put_dataset(request: web.Request) -> web.Response:
    """``PUT /ingestion/datasets/{id}``: create with an explicit schema (201; 200 if same)."""
    state = request.app[STATE]
    dataset_id = _path_id(request, "id")
    body = await read_body(request)
    if await state.meta(state.store.locked_schema, dataset_id) is None:  # a create, not a repeat
        await _slow_create(state)
    record, created = await ingest.create_dataset(state.store, state.ingest_pool, dataset_id, body)
    return web.json_response(record.to_json(), status=201 if created else 200)


async def _slow_create(state: ServerState) -> None:
    """``--create-delay-ms``: wait before a create is stored (an injected delay)."""
    if delay_s := state.faults.create_delay_s:
        log.info("delaying a create by %g ms before storing it", delay_s * 1000)
        await asyncio.sleep(delay_s)


async def list_files(request: web.Request) -> web.Response:
    state = request.app[STATE]
    dataset_id = _path_id(request, "id")
    try:
        files = await state.meta(state.store.list_files, dataset_id)
    except DatasetNotFound:
        raise not_found(f"dataset {dataset_id!r} does not exist") from None
    return web.json_response(
        {"ids": [f.file_id for f in files], "files": [f.to_json() for f in files]}
    )


async def delete_dataset(request: web.Request) -> web.Response:
    """``DELETE /ingestion/datasets/{id}``: the dataset and all its files; 204."""
    state = request.app[STATE]
    dataset_id = _path_id(request, "id")
    try:
        await state.meta(state.store.delete_dataset, dataset_id)
    except DatasetNotFound:
        raise not_found(f"dataset {dataset_id!r} does not exist") from None
    return web.Response(status=204)


async def delete_file(request: web.Request) -> web.Response:
    """``DELETE /ingestion/datasets/{id}/files/{file_id}``: 204."""
    state = request.app[STATE]
    dataset_id = _path_id(request, "id")
    file_id = _path_id(request, "file_id")
    try:
        deleted = await state.meta(state.store.delete_file, dataset_id, file_id)
    except DatasetNotFound:
        raise not_found(f"dataset {dataset_id!r} does not exist") from None
    if not deleted:
        raise not_found(f"dataset {dataset_id!r} has no file {file_id!r}")
    return web.Response(status=204)
