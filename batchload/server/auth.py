"""Bearer tokens for the local server: constant-time checks and runtime revocation.

A token can revoke itself (``POST /admin/revoke`` with that token), so a test can make
"the token stops working mid-run" happen. Revocation lives in memory: a restart
brings the token back.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable


class TokenGate:
    """Which bearer tokens are accepted; with ``required=False`` every request is."""

    def __init__(self, tokens: Iterable[str], *, required: bool = True) -> None:
        self.required = required
        self._tokens = [token.encode("utf-8") for token in tokens]

    def allows(self, token: str | None) -> bool:
        """True when ``token`` is accepted; compares against every token, in constant time."""
        if not self.required:
            return True
        if token is None:
            return False
        candidate = _raw(token)
        matches = [hmac.compare_digest(candidate, known) for known in self._tokens]
        return any(matches)

    def revoke(self, token: str) -> None:
        """Stop accepting ``token`` until the server restarts."""
        candidate = _raw(token)
        self._tokens = [
            known for known in self._tokens if not hmac.compare_digest(candidate, known)
        ]


def _raw(token: str) -> bytes:
    """A header's token as the bytes that came in (aiohttp keeps bytes that are not UTF-8
    as surrogates; a plain encode raised on them and answered 500)."""
    return token.encode("utf-8", "surrogateescape")


def bearer_token(header: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
