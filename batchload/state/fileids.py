"""Deterministic file_ids from a template, so that a re-run overwrites instead of duplicating.

Fields: ``{stem}`` (file name without extension), ``{name}`` (with it), ``{sha8}``
(first 8 hex digits of the file's sha256) and ``{part}`` (``part-0001`` for a part,
empty for a whole file). A template whose own text cannot make a valid id is refused.

A file name becomes id text the same way on every run (:func:`id_text`): accents are
dropped (``café`` -> ``cafe``), every run of other characters a file_id cannot hold
(spaces, other scripts, bytes that are not UTF-8) becomes one ``_``, an id's leading
(and a whole file's trailing) ``.``, ``_`` and ``-`` go, and a name longer than
``MAX_FIELD_CHARS`` keeps its start and ends with ``-`` and 8 hex digits of its sha256,
so it stays unique. A part's
id is the template's id plus ``.part-0001`` unless the template places ``{part}``
itself. Two files that map to one file_id are refused before anything is sent.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from batchload.errors import UsageError
from batchload.protocol import is_valid_id

DEFAULT_TEMPLATE = "{stem}"
FIELDS = frozenset({"stem", "name", "sha8", "part"})
MAX_ID_CHARS = 128
MAX_FIELD_CHARS = 100
"""Longest id text a name gives, so a template's own text and ``.part-0001`` still fit."""
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_COLLISIONS_SHOWN = 3


def part_label(part: int) -> str:
    """``part-0001`` for part 1: what ``{part}`` renders as."""
    return f"part-{part:04d}"


@dataclass(frozen=True, slots=True)
class FileIdTemplate:
    """A parsed ``--file-id`` template."""

    text: str = DEFAULT_TEMPLATE

    def __post_init__(self) -> None:
        fields = []
        try:
            parsed = list(string.Formatter().parse(self.text))
        except ValueError as exc:
            raise UsageError(f"--file-id template {self.text!r}: {exc}") from None
        for literal, field, spec, conversion in parsed:
            if _UNSAFE.search(literal):
                raise UsageError(
                    f"--file-id template {self.text!r} has characters a file_id cannot hold",
                    hint="use letters, digits, '.', '_' and '-' around the fields",
                )
            if field is None:
                continue
            if field not in FIELDS or spec or conversion:
                raise UsageError(
                    f"--file-id template {self.text!r}: unknown field {{{field}}}",
                    hint="fields are {stem}, {name}, {sha8} and {part}",
                )
            fields.append(field)
        if not fields or fields == ["part"]:
            raise UsageError(
                f"--file-id template {self.text!r} names no file",
                hint="include {stem}, {name} or {sha8}, e.g. '{stem}'",
            )

    @property
    def needs_hash(self) -> bool:
        """True when ids depend on content, so they are known only once a file is read."""
        return "{sha8}" in self.text

    def render(self, *, stem: str, name: str, sha256: str | None, part: int | None) -> str:
        """The file_id for one file (``part=None``) or one of its parts."""
        if self.needs_hash and not sha256:
            raise ValueError("this template needs the file's sha256")
        values = {  # a field the template does not name is not worked out
            "stem": id_text(stem) if "{stem}" in self.text else "",
            "name": id_text(name) if "{name}" in self.text else "",
            "sha8": (sha256 or "")[:8],
            "part": part_label(part) if part else "",
        }
        file_id = self.text.format(**values)
        if part and "{part}" not in self.text:
            file_id = f"{file_id}.{part_label(part)}"
        elif not part:
            file_id = file_id.rstrip("._-")  # an empty {part} leaves no dangling separator
        file_id = file_id.lstrip("._-")
        if not file_id:
            raise UsageError(
                f"file name {name!r} has no letter or digit a file_id can hold",
                hint="rename the file, or use a --file-id template such as '{stem}-{sha8}'",
            )
        if len(file_id) > MAX_ID_CHARS or not is_valid_id(file_id):
            raise UsageError(
                f"file_id {file_id!r} (from {name!r}) is not a valid id",
                hint=f"ids are 1-{MAX_ID_CHARS} of [A-Za-z0-9._-] starting with a letter "
                "or digit; choose a shorter --file-id template",
            )
        return file_id


def id_text(value: str) -> str:
    """A file name (or stem) as file_id text: stable, and only of characters an id holds."""
    if value.isascii():  # as NFKD leaves it: no accent to take off
        bare = value
    else:
        normal = unicodedata.normalize("NFKD", value)
        bare = "".join(c for c in normal if not unicodedata.combining(c))
    text = _UNSAFE.sub("_", bare)
    if len(text) <= MAX_FIELD_CHARS:
        return text
    digest = hashlib.sha256(os.fsencode(value)).hexdigest()[:8]
    return f"{text[: MAX_FIELD_CHARS - 9].rstrip('._-')}-{digest}"


def check_unique(assignments: Iterable[tuple[str, str]]) -> None:
    """Refuse ``(file_id, source)`` pairs where two sources share one file_id."""
    first: dict[str, str] = {}
    clashes: list[str] = []
    for file_id, source in assignments:
        other = first.setdefault(file_id, source)
        if other != source:
            clashes.append(f"{file_id!r} from {other} and {source}")
    if clashes:
        shown = "; ".join(clashes[:_MAX_COLLISIONS_SHOWN])
        more = f" (and {len(clashes) - _MAX_COLLISIONS_SHOWN} more)" if len(clashes) > 3 else ""
        raise UsageError(
            f"two files map to one file_id: {shown}{more}",
            hint="choose a --file-id template that tells them apart, e.g. '{stem}-{sha8}'",
        )
