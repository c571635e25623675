"""Run the local server until SIGTERM or SIGINT, announcing its real address once
(``https://`` when a TLS certificate is configured)."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable

from aiohttp import web

from batchload.server.app import make_app
from batchload.server.settings import SHUTDOWN_TIMEOUT_S, ServerSettings
from batchload.server.store import Store

log = logging.getLogger("batchload.server")


def run(settings: ServerSettings, *, announce: Callable[[str], None]) -> None:
    """Serve until signalled; ``announce`` gets ``http://HOST:PORT`` once listening."""
    asyncio.run(serve(settings, announce=announce))


async def serve(settings: ServerSettings, *, announce: Callable[[str], None]) -> None:
    """Open the store, listen, announce, and shut down cleanly on SIGTERM/SIGINT."""
    store = await asyncio.to_thread(Store, settings.data_dir)
    runner = web.AppRunner(
        make_app(settings, store),
        access_log=logging.getLogger("batchload.server.access"),
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        context = _tls_context(settings)
        site = web.TCPSite(
            runner, settings.host, settings.port, reuse_address=True, ssl_context=context
        )
        await site.start()
        host, port = runner.addresses[0][:2]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info("data dir %s; %s", store.data_dir, settings.faults.describe())
        if not settings.auth:
            log.warning("authentication is off (--no-auth): every request is accepted")
        scheme = "https" if context is not None else "http"
        announce(f"{scheme}://{_url_host(host)}:{port}")
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
        store.close()


def _tls_context(settings: ServerSettings) -> ssl.SSLContext | None:
    """The server's TLS context when a certificate is configured."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
