"""The one exception tree of batchload, and the exit code each error maps to.

::

    BatchloadError                      exit 1  (anything batchload raises on purpose)
    ├── UsageError                      exit 2  bad flags, no files matched, bad plan
    │   └── ContractError               exit 2  a contract file that cannot be used
    ├── ConfigError                     exit 2  missing token, bad endpoint, bad CA bundle
    ├── AuthError                       exit 3  401/403: the token is missing, wrong or revoked
    ├── ServiceError                    exit 4  the service answered with an error we cannot fix
    │   ├── TransientError              exit 4  worth retrying: 408, 429, 5xx, a dropped connection
    │   │   └── UnreachableError        exit 4  no answer at all (connection refused, DNS, timeout)
    │   └── PayloadTooLarge             exit 4  413: the request body is over the service's limit
    ├── LedgerError                     exit 4  the shared ledger (PostgreSQL) cannot be reached
    ├── ClusterError                    exit 4  the Dask scheduler cannot be reached or used
    ├── FileProblem                     exit 1  one file cannot be read or sent (the run goes on)
    │   ├── UnreadableFile                      the bytes cannot be parsed in their format
    │   ├── FileChanged                         the file changed on disk during the run
    │   └── ClaimLost                           its lease ran out: another process took the file
    └── RunIncomplete                   exit 1  some files were invalid or failed

Third-party errors (polars, pandera, aiohttp, sqlite3, psycopg, dask) are translated into
this tree once, at the stage that uses the library, with ``raise ... from``. Every error
pickles with its attributes, so it crosses from a Dask worker to the client intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_SERVICE = 4
EXIT_INTERRUPTED = 130


class BatchloadError(Exception):
    """Root of every error batchload raises on purpose."""

    exit_code = EXIT_INCOMPLETE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"

    def __reduce__(self) -> tuple[Any, ...]:
        # not through __init__: pickle cannot pass its keyword-only arguments
        return (_restored, (type(self), self.args), self.__dict__)


def _restored(cls: type[BatchloadError], args: tuple[object, ...]) -> BatchloadError:
    """An error as pickle rebuilds it: its args here, its attributes from its state."""
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class UsageError(BatchloadError):
    """The command line or a plan asks for something that cannot be done."""

    exit_code = EXIT_USAGE


class ContractError(UsageError):
    """A contract file is missing, malformed or not a polars pandera schema."""

    def __init__(self, message: str, *, path: Path | str | None = None, hint: str | None = None):
        super().__init__(f"{path}: {message}" if path else message, hint=hint)
        self.path = path


class ConfigError(BatchloadError):
    """Configuration is missing or wrong: token, endpoint, CA bundle, data dir."""

    exit_code = EXIT_USAGE


class AuthError(BatchloadError):
    """The service refused the token (401 or 403); the run stops, the manifest is kept."""

    exit_code = EXIT_AUTH

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


class ServiceError(BatchloadError):
    """The service answered with an error that retrying did not cure."""

    exit_code = EXIT_SERVICE

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: object = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.details = details


class TransientError(ServiceError):
    """A fault worth retrying (408, 429, 5xx, a dropped connection); may carry Retry-After."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        code: str | None = None,
        details: object = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, details=details, hint=hint)
        self.retry_after_s = retry_after_s


class UnreachableError(TransientError):
    """No answer from the endpoint at all: refused, unresolvable or timed out."""


class PayloadTooLarge(ServiceError):
    """413: the request body is over the service's limit; a smaller part may pass."""


class LedgerError(BatchloadError):
    """The ledger's database cannot be reached or refused a query; the run stops."""

    exit_code = EXIT_SERVICE


class ClusterError(BatchloadError):
    """The Dask scheduler cannot be reached, or cannot run the run's loops."""

    exit_code = EXIT_SERVICE


class FileProblem(BatchloadError):
    """One file cannot be used; it gets a verdict and the rest of the run goes on."""

    def __init__(self, message: str, *, path: Path | str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class UnreadableFile(FileProblem):
    """The file's bytes cannot be parsed in the format its name says."""


class FileChanged(FileProblem):
    """The file's content changed between hashing and sending."""


class ClaimLost(FileProblem):
    """This process's claim on a file ran out and another process took the file over:
    its outcome is that process's to record, not this one's."""


class RunIncomplete(BatchloadError):
    """The run finished, but some files were invalid or failed."""
