"""``batchload serve``: run the local ingestion server (the API contract, for real).

Only click and the standard library are imported here; aiohttp and pyarrow load when
the command runs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

EPILOG = """\b
Example:
  batchload serve --port 0 --token secret --data-dir /tmp/ingest

\b
Tokens: --token (repeatable) or BATCHLOAD_SERVER_TOKENS (comma-separated);
without any, the server refuses to start unless --no-auth is given.
Revoking a token at runtime: POST /admin/revoke with that token as the
bearer token; it answers 401 from then on, until the server restarts.
Faults apply to /ingestion/... requests only; --seed makes their counts repeat.
"""


@click.command(epilog=EPILOG)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0 = any free."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".batchload/server"),
    show_default=True,
    help="Where datasets and files are kept (SQLite metadata and the files' bytes).",
)
@click.option("--token", "tokens", multiple=True, metavar="TOKEN", help="Accepted bearer token.")
@click.option("--no-auth", is_flag=True, help="Accept every request, with or without a token.")
@click.option(
    "--max-body-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=64.0,
    show_default=True,
    help="Largest request body in MiB (base64 and JSON included); larger gets 413.",
)
@click.option(
    "--read-timeout-s",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Longest wait for the next piece of a request body; then 408.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Threads decoding, parsing and storing uploads. Default: 2 per CPU, at least 4.",
)
@click.option(
    "--latency-ms", type=click.FloatRange(min=0), default=0.0, help="Delay added to answers."
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of requests answered 503 before anything is stored.",
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of successful requests (uploads, creates, listings, deletes) carried out, "
    "then the connection closed without an answer.",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Requests per second; beyond it 429 with Retry-After. 0 = unlimited.",
)
@click.option(
    "--spike-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Share of requests answered --spike-ms late (after storing): outlasts client timeouts.",
)
@click.option(
    "--spike-ms", type=click.FloatRange(min=0), default=0.0, help="Length of a latency spike."
)
@click.option(
    "--create-delay-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Delay before a dataset create is stored (a client that gives up finds nothing yet).",
)
@click.option(
    "--no-dataset-put",
    is_flag=True,
    help="Refuse PUT /ingestion/datasets/{id} (405), as a service with only the guide's calls.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the fault knobs.")
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Serve https with this certificate (PEM, chain included); needs --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The private key of --tls-cert (PEM).",
)
def serve(  # noqa: PLR0917  (click passes each option as an argument)
    host: str,
    port: int,
    data_dir: Path,
    tokens: tuple[str, ...],
    no_auth: bool,
    max_body_mb: float,
    read_timeout_s: float,
    workers: int | None,
    latency_ms: float,
    fail_rate: float,
    drop_rate: float,
    rate_limit: float,
    spike_rate: float,
    spike_ms: float,
    create_delay_ms: float,
    no_dataset_put: bool,
    seed: int,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Run a local ingestion server implementing the Data Ingestion API."""
    from batchload.config import cpu_count, server_tokens
    from batchload.errors import ConfigError

    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    accepted = server_tokens(tokens)
    if not accepted and not no_auth:
        raise ConfigError(
            "no token configured: pass --token TOKEN or set BATCHLOAD_SERVER_TOKENS "
            "(or --no-auth to accept every request)"
        )

    from batchload.server.faults import FaultSettings
    from batchload.server.runner import run
    from batchload.server.settings import ServerSettings

    settings = ServerSettings(
        host=host,
        port=port,
        data_dir=data_dir,
        tokens=accepted,
        auth=not no_auth,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        read_timeout_s=read_timeout_s,
        workers=workers or max(4, 2 * cpu_count()),
        tls_cert=tls_cert,
        tls_key=tls_key,
        dataset_put=not no_dataset_put,
        faults=FaultSettings(
            latency_ms=latency_ms,
            fail_rate=fail_rate,
            drop_rate=drop_rate,
            rate_limit=rate_limit,
            spike_rate=spike_rate,
            spike_ms=spike_ms,
            create_delay_ms=create_delay_ms,
            seed=seed,
        ),
    )
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    run(settings, announce=_announce)


def _announce(url: str) -> None:
    """The one stdout line other programs wait for."""
    sys.stdout.write(f"batchload serve listening on {url}\n")
    sys.stdout.flush()
