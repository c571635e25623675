"""Objects in S3, GCS, Azure or over HTTPS as sources: listed with glob semantics, read
pinned to the version that was listed.

- A URL is ``s3://bucket/key``, ``gs://bucket/key``, ``az://container/key`` or
  ``https://host/path`` (one file). A key with glob characters selects as a local glob
  does (``*`` and ``?`` within one segment and not a leading ``.``, ``**`` any depth);
  a URL ending in ``/`` means every object below it, like a folder (hidden names
  left out). Listing goes page by page from the longest literal prefix, keeping only
  the matches: a prefix of a million objects is never held whole.
- Stores are configured by obstore from each store's standard environment (for S3:
  ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
  ``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``; GCS and Azure likewise) and the credential
  chains users already have; batchload never sees, prints or stores a credential.
- :func:`fetch` reads an object with ``If-Match`` on the ETag it was listed with (and
  its version id when the bucket has versions), streamed in chunks to a file in the
  run's spool while its sha256 is taken: memory stays bounded per file, the bytes
  validated and sent are the ones hashed. An object rewritten since it was listed
  fails the condition and is read again as its new version, never half old and half
  new. The copy's mtime is set to the object's last-modified time, so the rest of the
  run treats it like a local file whose ``stat`` must not change.
- A URL is shown without user info or query string (a signed URL's signature is a
  credential); a signed URL is refused, not fetched.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

from batchload.config import object_client_options
from batchload.errors import FileChanged, FileProblem, UsageError
from batchload.lazy import lazy_module
from batchload.read.content import KEEP_BYTES, Fingerprint

if TYPE_CHECKING:
    import obstore
    import obstore.exceptions as obstore_errors
    import obstore.store as obstore_store
    from obstore import GetOptions  # only in the type stubs
    from obstore.store import ClientConfig
else:  # read only for objects' URLs
    obstore = lazy_module("obstore")
    obstore_errors = lazy_module("obstore.exceptions")
    obstore_store = lazy_module("obstore.store")

OBJECT_SCHEMES = frozenset({"s3", "gs", "az", "abfs", "abfss", "azure", "https", "http"})
LIST_PAGE = 1000
"""Keys asked for per listing page."""
READ_CHUNK_BYTES = 1024 * 1024
"""Bytes of an object taken at a time: obstore buffers a few chunks ahead (+35 MiB while
a 500 MB object was read with 8 MiB chunks, +8 MiB with these), per read in flight."""
OBJECT_READS = 8
"""Objects a run reads at once (each waits on the network; a small one's check waits
for the rest of its group)."""
READ_ATTEMPTS = 3
"""Reads of an object that keeps being rewritten before it is given up (FileChanged)."""
_GLOB_CHARS = frozenset("*?[")
COPY_PREFIX = "object-"
"""Name prefix of the copies :func:`fetch` makes."""


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """One object as a listing or a HEAD saw it."""

    url: str
    """``scheme://bucket/key``: the object's identity (never with a query string)."""
    size: int
    mtime_ns: int
    etag: str | None
    version: str | None


def is_url(text: str) -> bool:
    """Whether ``text`` names an object (``s3://...``), not a local path."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in OBJECT_SCHEMES


def redact(url: str) -> str:
    """``url`` as it may be shown: no user info, no query string, no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    shown = urlunsplit((parts.scheme, host, parts.path, "", ""))
    return shown + ("?<redacted>" if parts.query else "")


def _split(url: str) -> tuple[str, str]:
    """(store root, key): ``s3://bucket/a/b.csv`` -> (``s3://bucket``, ``a/b.csv``)."""
    parts = urlsplit(url)
    if parts.query or parts.username or parts.password:
        raise UsageError(
            f"{redact(url)}: URLs with credentials or a query string (signed URLs) are not read",
            hint="give the plain URL; credentials come from the store's environment",
        )
    if not parts.netloc:
        raise UsageError(f"{redact(url)}: no bucket or host in the URL")
    return f"{parts.scheme.lower()}://{parts.netloc}", parts.path.lstrip("/")


@functools.lru_cache(maxsize=32)
def _store(root: str) -> Any:
    """One store per root, configured from the store's environment."""
    options = cast("ClientConfig", object_client_options())
    try:
        if root.startswith(("http://", "https://")):
            return obstore_store.HTTPStore.from_url(root, client_options=options)
        return obstore_store.from_url(root, client_options=options)
    except obstore_errors.BaseError as exc:
        raise UsageError(f"{root}: cannot configure the store: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """An obstore error in one line, with no URL query strings in it."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return re.sub(r"\?[^\s\"')]*", "?<redacted>", first)[:300]


def _meta(root: str, item: Any) -> ObjectMeta:
    modified = item.get("last_modified")
    mtime_ns = int(modified.timestamp() * 1e9) if isinstance(modified, datetime) else 0
    return ObjectMeta(
        url=f"{root}/{item['path']}",
        size=int(item["size"]),
        mtime_ns=mtime_ns,
        etag=item.get("e_tag"),
        version=item.get("version"),
    )


def head(url: str) -> ObjectMeta | str:
    """The object ``url`` names, or why it cannot be read (a rejection reason)."""
    root, key = _split(url)
    try:
        return _meta(root, obstore.head(_store(root), key))
    except (FileNotFoundError, obstore_errors.NotFoundError):
        return "no such object"
    except (
        obstore_errors.PermissionDeniedError,
        obstore_errors.UnauthenticatedError,
        PermissionError,
    ) as exc:
        return f"access denied: {_reason(exc)}"
    except obstore_errors.BaseError as exc:
        return f"cannot read: {_reason(exc)}"


def is_glob(url: str) -> bool:
    return bool(_GLOB_CHARS & set(url))


def list_matching(pattern: str, keep: Callable[[str], bool]) -> Iterator[ObjectMeta]:
    """The objects a glob URL (or a ``.../`` prefix) selects, in key order, page by page;
    ``keep`` gets each match's key below the literal prefix (the include/exclude filters)."""
    root, key_pattern = _split(pattern)
    folder = key_pattern == "" or key_pattern.endswith("/")
    literal = key_pattern if folder else key_pattern[: _first_glob(key_pattern)]
    prefix = literal[: literal.rfind("/") + 1]
    matches = _folder_rule(prefix) if folder else _glob_rule(key_pattern)
    try:
        for page in obstore.list(_store(root), prefix=prefix or None, chunk_size=LIST_PAGE):
            for item in page:
                key = item["path"]
                if matches(key) and keep(key[len(prefix) :]):
                    yield _meta(root, item)
    except obstore_errors.BaseError as exc:
        raise UsageError(f"cannot list {redact(pattern)}: {_reason(exc)}") from None
    except (FileNotFoundError, PermissionError) as exc:
        raise UsageError(f"cannot list {redact(pattern)}: {_reason(exc)}") from None


def _first_glob(text: str) -> int:
    return min(text.index(c) for c in _GLOB_CHARS if c in text)


def _folder_rule(prefix: str) -> Callable[[str], bool]:
    def below(key: str) -> bool:
        rest = key[len(prefix) :]
        return bool(rest) and not any(s.startswith(".") for s in rest.split("/"))

    return below


def _glob_rule(pattern: str) -> Callable[[str], bool]:
    """A key matcher with the local glob's rules (see the module docstring)."""
    parts: list[str] = []
    segments = pattern.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "**":
            parts.append("" if last else r"(?:[^./][^/]*/)*")
            if last:
                parts.append(r"(?:[^./][^/]*(?:/[^./][^/]*)*)?")
            continue
        parts.append(_segment(segment) + ("" if last else "/"))
    regex = re.compile("".join(parts))
    return lambda key: regex.fullmatch(key) is not None


def _segment(segment: str) -> str:
    out = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "*":
            out.append(r"(?!\.)[^/]*" if i == 0 else r"[^/]*")
        elif c == "?":
            out.append(r"(?!\.)[^/]" if i == 0 else r"[^/]")
        elif c == "[" and (end := segment.find("]", i + 2)) != -1:
            body = segment[i + 1 : end]
            negate = body.startswith("!")
            body = re.escape(body[1:] if negate else body).replace("\\-", "-")
            out.append("[" + ("^" if negate else "") + body + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def fetch(
    url: str, etag: str | None, version: str | None, directory: Path
) -> tuple[Path, ObjectMeta, Fingerprint]:
    """Read the object, pinned to ``etag`` (and ``version``), into a new file under
    ``directory``; return the file, the version read and its fingerprint.

    A rewritten object is read again as its new version (up to READ_ATTEMPTS times).
    Raises FileProblem (FileChanged when it never held still). Blocking: run it in a
    worker thread.
    """
    root, key = _split(url)
    store = _store(root)
    for _ in range(READ_ATTEMPTS):
        options: GetOptions = {}
        if etag:
            options["if_match"] = etag
        if version:
            options["version"] = version
        try:
            result = obstore.get(store, key, options=options)
            meta = _meta(root, result.meta)
            return _copy(result, meta, directory)
        except (
            obstore_errors.PreconditionError
        ):  # rewritten since it was listed: take the new version
            fresh = head(url)
            if isinstance(fresh, str):
                raise FileProblem(fresh, path=url) from None
            etag, version = fresh.etag, None
        except (FileNotFoundError, obstore_errors.NotFoundError):
            raise FileProblem("the object is gone", path=url) from None
        except (
            obstore_errors.PermissionDeniedError,
            obstore_errors.UnauthenticatedError,
            PermissionError,
        ) as exc:
            raise FileProblem(f"access denied: {_reason(exc)}", path=url) from None
        except obstore_errors.BaseError as exc:
            raise FileProblem(f"cannot read: {_reason(exc)}", path=url) from None
    raise FileChanged(f"the object was rewritten {READ_ATTEMPTS} times while read", path=url)


def _copy(result: Any, meta: ObjectMeta, directory: Path) -> tuple[Path, ObjectMeta, Fingerprint]:
    """Stream ``result`` into a new file, hashing it; the file gets the object's mtime."""
    digest = hashlib.sha256()
    kept: list[bytes] | None = [] if meta.size <= KEEP_BYTES else None
    size = 0
    suffix = os.path.splitext(meta.url)[1]  # read as its format says, like the object
    handle, name = tempfile.mkstemp(prefix=COPY_PREFIX, suffix=suffix, dir=directory)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in result.stream(min_chunk_size=READ_CHUNK_BYTES):
                view = memoryview(chunk)
                digest.update(view)
                out.write(view)
                size += len(view)
                if kept is not None:
                    kept.append(bytes(view))
        os.utime(path, ns=(meta.mtime_ns, meta.mtime_ns))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size != meta.size:
        path.unlink(missing_ok=True)
        raise FileChanged(f"read {size} bytes of an object of {meta.size}", path=meta.url)
    data = None if kept is None else b"".join(kept)
    return path, meta, Fingerprint(digest.hexdigest(), size, meta.mtime_ns, data)
