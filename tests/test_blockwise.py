"""Validation block by block: the same verdicts, rows and keys as reading the file whole."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import numpy as np
import pandera.polars as pa
import polars as pl
import pytest

from batchload.check.blockwise import validate_blockwise
from batchload.check.crossfile import UniqueKeys
from batchload.check.parts import PROBE_ROWS, Part, PartCutter, split_frame
from batchload.check.spool import PartSpool
from batchload.check.validate import in_blocks, validate_files
from batchload.check.verdict import FileVerdict
from batchload.contract.model import Contract, arrow_schema, build_contract
from batchload.errors import FileProblem
from batchload.read.content import DiskSource, MemorySource
from batchload.read.csv import CannotReadInBlocks, read_csv_blocks
from batchload.read.frames import read_frame

HEADER = "date,ticker,signal,volume\n"
BLOCK = 2048  # bytes: a few dozen rows a block


def signals(*, unique_ticker: bool = False, checks: list[pa.Check] | None = None) -> Contract:
    schema = pa.DataFrameSchema(
        {
            "date": pa.Column(pl.Date),
            "ticker": pa.Column(
                pl.String, checks or [pa.Check.str_matches(r"^[A-Z]+$")], unique=unique_ticker
            ),
            "signal": pa.Column(pl.Float64, pa.Check.in_range(-1.0, 1.0), nullable=True),
            "volume": pa.Column(pl.Int64, pa.Check.ge(0)),
        },
        strict=True,
        ordered=True,
        unique=["date", "ticker"],
        name="signals",
    )
    return build_contract(schema)


@pytest.fixture
def contract() -> Contract:
    return signals()


def rows(count: int, *, first: int = 0) -> list[str]:
    """Valid rows, each (date, ticker) key its own."""
    out = []
    for k in range(first, first + count):
        day = 1 + k // 400
        out.append(f"2024-{1 + day // 28:02d}-{1 + day % 28:02d},T{_letters(k % 400)},0.5,{k}")
    return out


def _letters(n: int) -> str:
    return "".join(chr(ord("A") + int(d)) for d in str(n))


def write(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def both(path: Path, contract: Contract, **kwargs: object) -> tuple[FileVerdict, FileVerdict]:
    """The verdict validated block by block, and read whole."""
    assert in_blocks(path, contract, BLOCK)
    blocks = validate_files([path], contract, block_bytes=BLOCK, **kwargs)  # type: ignore[arg-type]
    whole = validate_files([path], contract, block_bytes=None, **kwargs)  # type: ignore[arg-type]
    return blocks[0], whole[0]


def test_blocks_read_what_the_whole_file_reads(tmp_path: Path, contract: Contract) -> None:
    path = write(tmp_path / "a.csv", rows(1000))
    blocks = list(read_csv_blocks(path, contract, block_bytes=BLOCK))
    assert len(blocks) > 10
    assert pl.concat(blocks).equals(read_frame(path, contract))


def test_a_header_unlike_the_contract_is_not_read_in_blocks(
    tmp_path: Path, contract: Contract
) -> None:
    path = write(tmp_path / "a.csv", [r + ",x" for r in rows(500)], header=HEADER[:-1] + ",note\n")
    with pytest.raises(CannotReadInBlocks):
        list(read_csv_blocks(path, contract, block_bytes=BLOCK))
    assert validate_blockwise(path, contract, block_bytes=BLOCK) is None


def test_a_valid_file(tmp_path: Path, contract: Contract) -> None:
    path = write(tmp_path / "a.csv", rows(1000))
    blocks, whole = both(path, contract, keep_frames=True)
    assert blocks.valid and blocks.rows == 1000
    assert blocks == whole
    assert blocks.frame is not None and whole.frame is not None
    assert blocks.frame.equals(whole.frame)


@pytest.mark.parametrize("seed", range(6))
def test_bad_rows_anywhere_give_the_whole_file_verdict(
    tmp_path: Path, contract: Contract, seed: int
) -> None:
    rng = random.Random(seed)
    lines = rows(1200)
    faults = [
        lambda r: r.replace(",0.5,", ",7.5,"),  # out of range
        lambda r: r.replace(",0.5,", ",,"),  # null, allowed
        lambda r: r.replace(",T", ",t"),  # lower case ticker
        lambda r: r.rsplit(",", 1)[0] + ",-3",  # negative volume
    ]
    for _ in range(rng.randint(1, 40)):
        at = rng.randrange(len(lines))
        lines[at] = rng.choice(faults)(lines[at])
    for _ in range(rng.randint(0, 3)):  # a repeated key, anywhere (a block apart or not)
        lines[rng.randrange(len(lines))] = lines[rng.randrange(len(lines))]
    blocks, whole = both(write(tmp_path / "a.csv", lines), contract)
    assert blocks == whole


def test_key_hashes_that_cannot_wait_on_disk_fail_the_file_with_the_reason(
    tmp_path: Path, contract: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hashes wait in a temporary file while the blocks are read: without one (no
    such folder, a full disk) the file fails with why, never with a traceback."""
    path = write(tmp_path / "a.csv", rows(1000))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    with pytest.raises(FileProblem, match="cannot keep its key hashes in a temporary file") as e:
        validate_blockwise(path, contract, block_bytes=BLOCK)
    assert e.value.path == path and "TMPDIR" in (e.value.hint or "")


def test_a_duplicate_pair_across_blocks(tmp_path: Path, contract: Contract) -> None:
    lines = rows(1000)
    lines[900] = lines[3]
    blocks, whole = both(write(tmp_path / "a.csv", lines), contract)
    assert blocks == whole
    (problem,) = blocks.problems
    assert problem.check == "multiple_fields_uniqueness"
    assert problem.rows == (4, 901)
    assert problem.count == 2


def test_equal_hashes_that_are_not_equal_keys_are_no_repeat(
    tmp_path: Path, contract: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Distinct hashes prove distinct keys; equal ones are checked on the keys themselves."""
    path = write(tmp_path / "a.csv", rows(1000))
    real = UniqueKeys.row_hashes

    def colliding(frame: pl.DataFrame, columns: object) -> pl.Series:
        return real(frame, columns) % 500  # type: ignore[arg-type]

    monkeypatch.setattr(UniqueKeys, "row_hashes", staticmethod(colliding))
    found = validate_blockwise(path, contract, block_bytes=BLOCK)
    assert found is not None and found.problems == []


def test_column_level_unique(tmp_path: Path) -> None:
    contract = signals(unique_ticker=True)
    lines = [f"2024-01-02,T{_letters(k)},0.1,{k}" for k in range(900)]
    lines[700] = lines[700].replace(f"T{_letters(700)}", f"T{_letters(5)}")
    blocks, whole = both(write(tmp_path / "a.csv", lines), contract)
    assert blocks == whole
    assert {p.check: p.rows for p in blocks.problems} == {
        "multiple_fields_uniqueness": (6, 701),  # one date: the key repeats too
        "field_uniqueness": (6, 701),
    }


def test_what_the_cut_could_change_is_validated_whole(tmp_path: Path, contract: Contract) -> None:
    bad_cell = rows(1000)
    bad_cell[800] = bad_cell[800].replace(",0.5,", ",abc,")
    ragged = rows(1000)
    ragged[600] += ",9"
    moved = [",".join(r.split(",")[i] for i in (1, 0, 2, 3)) for r in rows(1000)]
    for name, lines, header in (
        ("cell.csv", bad_cell, HEADER),
        ("ragged.csv", ragged, HEADER),
        ("moved.csv", moved, "ticker,date,signal,volume\n"),
    ):
        path = write(tmp_path / name, lines, header=header)
        assert validate_blockwise(path, contract, block_bytes=BLOCK) is None
        blocks, whole = both(path, contract)
        assert blocks == whole and not blocks.valid


def test_a_check_not_known_to_judge_rows_alone_is_never_cut(tmp_path: Path) -> None:
    custom = pa.Check(lambda data: data.lazyframe.select(pl.col(data.key).str.len_chars() > 0))
    contract = signals(checks=[custom])
    path = write(tmp_path / "a.csv", rows(1000))
    assert not in_blocks(path, contract, BLOCK)
    assert in_blocks(path, signals(), BLOCK)


def hashes_of(stored: bytes | memoryview) -> pl.Series:
    """Key hashes as the manifest keeps them (u64 in the machine's byte order), as a series."""
    return pl.Series("h", np.frombuffer(stored, dtype=np.uint64))


def test_keys_across_files_with_rows_of_the_whole_file(tmp_path: Path, contract: Contract) -> None:
    first = write(tmp_path / "a.csv", rows(1000))
    second = write(tmp_path / "b.csv", rows(1000, first=900))  # rows 1..100 repeat a.csv
    verdicts = {}
    for block_bytes in (BLOCK, None):
        keys = UniqueKeys.for_contract(contract)
        verdicts[block_bytes] = validate_files(
            [first, second], contract, keys=keys, keep_key_hashes=True, block_bytes=block_bytes
        )
    assert verdicts[BLOCK] == verdicts[None]
    a, b = verdicts[BLOCK]
    assert a.valid and a.key_hashes is not None and verdicts[None][0].key_hashes is not None
    # the same hashes; in blocks they come sorted (the manifest keeps them in no order)
    assert isinstance(a.key_hashes, bytes | memoryview)
    assert isinstance(in_rows := verdicts[None][0].key_hashes, bytes | memoryview)
    assert hashes_of(a.key_hashes).to_list() == hashes_of(in_rows).sort().to_list()
    (problem,) = b.problems
    assert problem.check == "unique_across_files"
    assert problem.count == 100 and problem.rows == (1, 2, 3, 4, 5)
    assert problem.detail == f"already in {first}"


def test_parts_cut_from_the_blocks_are_the_parts_of_the_whole_frame(
    tmp_path: Path, contract: Contract
) -> None:
    path = write(tmp_path / "a.csv", rows(3000))
    found = validate_blockwise(path, contract, block_bytes=BLOCK, keep_frame=True)
    assert found is not None
    whole = read_frame(path, contract)
    cut = [
        [p.source.data for p in split_frame(f, budget_bytes=8000, schema=arrow_schema(contract))]
        for f in (found.frame, whole, found.frame)
    ]
    assert len(cut[0]) > 3
    assert cut[0] == cut[1] == cut[2]


def test_a_cutter_fed_block_by_block_cuts_the_parts_of_the_whole_frame(
    tmp_path: Path, contract: Contract
) -> None:
    # more rows than the first part's probe, so parts are cut before the last block comes
    path = write(tmp_path / "a.csv", rows(PROBE_ROWS + 10_000))
    schema = arrow_schema(contract)
    budget = 60_000
    cutter = PartCutter(budget_bytes=budget, schema=schema, path=path)
    streamed: list[Part] = []
    blocks = 0
    cut_while_fed = 0
    for block in read_csv_blocks(path, contract, block_bytes=64 * 1024):
        blocks += 1
        streamed += cutter.feed(block)
        cut_while_fed = len(streamed)
    streamed += cutter.finish()
    whole = list(split_frame(read_frame(path, contract), budget_bytes=budget, schema=schema))

    assert blocks > 10 and len(whole) > 5 and cut_while_fed > 3
    assert [(p.index, p.first_row, p.rows) for p in streamed] == [
        (p.index, p.first_row, p.rows) for p in whole
    ]
    assert [p.source.sha256 for p in streamed] == [p.source.sha256 for p in whole]
    assert all(p.source.size <= budget for p in whole)
    assert sum(p.rows for p in whole) == PROBE_ROWS + 10_000
    with PartSpool.temporary(tmp_path) as spool:  # written to files: the same bytes
        on_disk = PartCutter(
            budget_bytes=budget, schema=schema, write=spool.writer(schema, source=path)
        )
        spooled = list(on_disk.feed(read_frame(path, contract))) + list(on_disk.finish())
        assert [p.source.sha256 for p in spooled] == [p.source.sha256 for p in whole]
        files = [p.source for p in spooled if isinstance(p.source, DiskSource)]
        data = [p.source for p in whole if isinstance(p.source, MemorySource)]
        assert [f.path.read_bytes() for f in files] == [d.data for d in data]
        assert len(files) == len(data) == len(whole)
