"""Hostile files built in tests: a zip bomb workbook, a workbook with no sheets, garbage."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_NS = "http://schemas.openxmlformats.org"
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<Types xmlns="{_NS}/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.'
    'openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'
)
ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<Relationships xmlns="{_NS}/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_NS}/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>'
)
WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<workbook xmlns="{_NS}/spreadsheetml/2006/main" '
    f'xmlns:r="{_NS}/officeDocument/2006/relationships">'
    "<sheets>{sheets}</sheets></workbook>"
)
WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<Relationships xmlns="{_NS}/package/2006/relationships">{{rels}}</Relationships>'
)
SHEET_REL = (
    f'<Relationship Id="rId1" Type="{_NS}/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/>'
)
SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<worksheet xmlns="{_NS}/spreadsheetml/2006/main"><sheetData>'
    '<row r="1"><c r="A1" t="inlineStr"><is><t>ticker</t></is></c>'
    '<c r="B1" t="inlineStr"><is><t>price</t></is></c></row>'
)
SHEET_TAIL = "</sheetData></worksheet>"
BOMB_ROW = b'<row><c t="inlineStr"><is><t>AAPL</t></is></c><c><v>1.5</v></c></row>'


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def zip_archive(entries: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip of ``(name, raw deflate data, crc32, uncompressed size)`` entries."""
    local, central = bytearray(), bytearray()
    for name, data, crc, size in entries:
        encoded = name.encode()
        offset = len(local)
        local += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0
        )
        local += encoded + data
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            0,
            8,
            0,
            0x21,
            crc,
            len(data),
            size,
            len(encoded),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += encoded
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(local), 0
    )
    return bytes(local + central + end)


def _entry(name: str, text: str) -> tuple[str, bytes, int, int]:
    data = text.encode()
    return name, _deflate(data), zlib.crc32(data), len(data)


def workbook_bytes(sheet: tuple[str, bytes, int, int] | None) -> bytes:
    """An xlsx with the one given sheet entry, or with no sheet at all."""
    entries = [
        _entry("[Content_Types].xml", CONTENT_TYPES),
        _entry("_rels/.rels", ROOT_RELS),
        _entry(
            "xl/workbook.xml",
            WORKBOOK.format(sheets='<sheet name="data" sheetId="1" r:id="rId1"/>' if sheet else ""),
        ),
        _entry("xl/_rels/workbook.xml.rels", WORKBOOK_RELS.format(rels=SHEET_REL if sheet else "")),
    ]
    return zip_archive(entries + ([sheet] if sheet else []))


def zip_bomb_xlsx(path: Path, *, expanded_mib: int, declared: int | None = None) -> int:
    """An xlsx whose one sheet expands to about ``expanded_mib`` MiB of XML rows while
    the file stays small (deflate blocks, each flushed, repeated); returns the real
    expanded size. ``declared`` lies about the uncompressed size in the zip headers."""
    chunk = BOMB_ROW * ((1 << 20) // len(BOMB_ROW))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    head, tail = SHEET_HEAD.encode(), SHEET_TAIL.encode()
    opening = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = opening.compress(head) + opening.flush(zlib.Z_FULL_FLUSH)
    data = first + segment * expanded_mib + _deflate(tail)
    size = len(head) + len(chunk) * expanded_mib + len(tail)
    stated = size if declared is None else declared
    # The CRC is left at 0: computing it costs a pass over gigabytes, and a reader only
    # finds it wrong after inflating the whole part, which is the damage already done.
    path.write_bytes(workbook_bytes(("xl/worksheets/sheet1.xml", data, 0, stated)))
    return size


def plain_sheet_xlsx(path: Path, rows: list[tuple[str, float]]) -> None:
    """A one-sheet xlsx built by hand (inline strings), to check the builder itself."""
    body = "".join(
        f'<row><c t="inlineStr"><is><t>{t}</t></is></c><c><v>{v}</v></c></row>' for t, v in rows
    )
    sheet = _entry("xl/worksheets/sheet1.xml", SHEET_HEAD + body + SHEET_TAIL)
    path.write_bytes(workbook_bytes(sheet))
