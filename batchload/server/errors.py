"""The one error type of the local server, rendered as the contract's error JSON.

Every refusal is an :class:`ApiError` raised where the problem is found and turned into
``{"error": {"code", "message", "details"}}`` in one place (the error middleware).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchload.protocol import ErrorCode


class ApiError(Exception):
    """A refusal with its HTTP status, the contract's error code and optional details."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        details: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code: ErrorCode = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def payload(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def bad_request(message: str, details: object = None) -> ApiError:
    """400: the request itself is wrong (JSON, a field, base64, the file's bytes, an id)."""
    return ApiError(400, "bad_request", message, details=details)


def not_found(message: str) -> ApiError:
    """404: no such dataset, file or route."""
    return ApiError(404, "not_found", message)


def unsupported(message: str, details: object = None) -> ApiError:
    """415: a file_format or upload_format the server does not take."""
    return ApiError(415, "unsupported_format", message, details=details)
