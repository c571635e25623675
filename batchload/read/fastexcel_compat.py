"""fastexcel's cell errors, read back into the refused cell: the only module that parses them.

``to_arrow_with_errors()`` (fastexcel 0.21) reports each cell that does not fit its
column's type as a ``CellError`` whose ``detail`` shows the cell only as calamine's
Rust debug form: ``Expected int but got 'String("abc")'``, ``... got 'Bool(true)'``
(for a boolean column without the closing quote). :func:`refused_value` gets the cell's
text back; ``tests/test_compat_fastexcel.py`` writes such cells and pins that it still
does, so an upgrade that rewords the detail fails there.
"""

from __future__ import annotations

import re

__all__ = ["refused_value"]

_GOT = re.compile(r"got '\w+\((.*)\)'?\s*$", re.S)
_ESCAPE = re.compile(r'\\(u\{[0-9a-fA-F]+\}|["\\\'nrt0])')
_ESCAPED = {'"': '"', "\\": "\\", "'": "'", "n": "\n", "r": "\r", "t": "\t", "0": "\0"}


def refused_value(detail: str) -> str | None:
    """The text of the cell a ``CellError.detail`` refuses (``String("abc")`` -> ``abc``,
    ``Bool(true)`` -> ``true``); None when the detail does not show it."""
    got = _GOT.search(detail)
    if got is None:
        return None
    value = got.group(1)
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = _ESCAPE.sub(_unescaped, value[1:-1])
    return value


def _unescaped(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.startswith("u{"):
        return chr(int(code[2:-1], 16))
    return _ESCAPED[code]
