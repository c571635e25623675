"""Validation: verdicts per file, grouped calls mapped back to file and row, cross-file keys."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchload.check.crossfile import Earlier, UniqueKeys
from batchload.check.rows import validate_chunk
from batchload.check.validate import MAX_EXAMPLES, Problem, validate_files, validate_frame
from batchload.check.verdict import FileVerdict, group_by_fingerprint
from batchload.contract.model import Contract, build_contract
from batchload.errors import BatchloadError
from batchload.state.manifest import Manifest
from batchload.state.records import FileKeys, KeyRun
from tests.test_blockwise import hashes_of, signals

HEADER = "date,ticker,signal,volume\n"


@pytest.fixture
def contract() -> Contract:
    return signals()


def csv(path: Path, *rows: str, header: str = HEADER) -> Path:
    path.write_text(header + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def day_file(tmp_path: Path, day: int, tickers: tuple[str, ...] = ("AAPL", "MSFT")) -> Path:
    rows = [f"2024-01-{day:02d},{t},0.1,{i}" for i, t in enumerate(tickers)]
    return csv(tmp_path / f"day-{day:02d}.csv", *rows)


def problems_of(verdict: FileVerdict) -> dict[tuple[str | None, str], Problem]:
    return {(p.column, p.check): p for p in verdict.problems}


# ---------------------------------------------------------------------------- verdicts


def test_valid_files(tmp_path: Path, contract: Contract) -> None:
    paths = [day_file(tmp_path, d) for d in (2, 3)]
    verdicts = validate_files(paths, contract)
    assert [v.status for v in verdicts] == ["valid", "valid"]
    assert [v.rows for v in verdicts] == [2, 2]
    assert verdicts[0].reason == "valid (2 rows)"
    assert verdicts[0].fingerprint == contract.fingerprint
    assert verdicts[0].frame is None


def test_each_bad_input_gets_a_verdict_and_the_run_goes_on(
    tmp_path: Path, contract: Contract
) -> None:
    good = day_file(tmp_path, 2)
    cases = {
        "unknown.txt": ("unreadable", "unknown file extension '.txt'"),
        "empty.csv": ("unreadable", "empty file: no header row"),
        "ragged.csv": ("unreadable", "ragged rows: row 1 has 2 fields, the header has 4"),
        "latin1.csv": ("unreadable", "not UTF-8 text"),
        "header.csv": ("invalid", "no data rows (header only)"),
        "text.csv": ("invalid", "signal: 1 value(s) are not double (rows 1: high)"),
        "nulls.csv": ("invalid", "volume: 1 null value(s) (rows 2)"),
        "missing.csv": ("invalid", "column 'volume' is missing"),
        "extra.csv": ("invalid", "unexpected column 'note'"),
        "moved.csv": ("invalid", "columns are out of order at 'ticker'"),
        "range.csv": ("invalid", "signal: in_range(-1.0, 1.0) failed on 1 row(s) (rows 1: 1.5)"),
    }
    (tmp_path / "unknown.txt").write_text("x")
    (tmp_path / "empty.csv").write_bytes(b"")
    csv(tmp_path / "ragged.csv", "2024-01-02,AAPL")
    (tmp_path / "latin1.csv").write_bytes((HEADER + "2024-01-02,CAFÉ,0.1,1\n").encode("latin-1"))
    csv(tmp_path / "header.csv")
    csv(tmp_path / "text.csv", "2024-01-02,AAPL,high,1")
    csv(tmp_path / "nulls.csv", "2024-01-02,AAPL,0.1,1", "2024-01-02,MSFT,0.1,")
    csv(tmp_path / "missing.csv", "2024-01-02,AAPL,0.1", header="date,ticker,signal\n")
    csv(tmp_path / "extra.csv", "2024-01-02,AAPL,0.1,1,x", header=HEADER.strip() + ",note\n")
    csv(tmp_path / "moved.csv", "AAPL,2024-01-02,0.1,1", header="ticker,date,signal,volume\n")
    csv(tmp_path / "range.csv", "2024-01-02,AAPL,1.5,1")
    paths = [tmp_path / name for name in cases]
    verdicts = validate_files([good, *paths], contract)
    assert verdicts[0].valid
    for path, verdict in zip(paths, verdicts[1:], strict=True):
        status, message = cases[path.name]
        assert verdict.path == path
        assert verdict.status == status, (path.name, verdict.reason)
        assert message in verdict.reason, (path.name, verdict.reason)
        assert "\n" not in verdict.reason


def test_several_problems_are_all_collected(tmp_path: Path, contract: Contract) -> None:
    path = csv(
        tmp_path / "bad.csv",
        "2024-01-02,AAPL,1.5,1",
        "2024-01-02,AAPL,0.1,-3",
        "2024-01-03,aapl,,2",
    )
    (verdict,) = validate_files([path], contract)
    found = problems_of(verdict)
    assert found[("signal", "in_range(-1.0, 1.0)")].rows == (1,)
    assert found[("volume", "greater_than_or_equal_to(0)")].values == ("-3",)
    assert found[("ticker", "str_matches('^[A-Z]+$')")].rows == (3,)
    unique = found[("date, ticker", "multiple_fields_uniqueness")]
    assert unique.count == 2 and unique.rows == (1, 2)
    assert unique.values[0] == '{"date":"2024-01-02","ticker":"AAPL"}'
    assert verdict.reason.startswith("invalid: 4 problems (")


def test_wrong_dtype_reports_the_dtype_not_check_errors(tmp_path: Path, contract: Contract) -> None:
    frame = pl.DataFrame(
        {
            "date": [dt.date(2024, 1, 2)],
            "ticker": ["AAPL"],
            "signal": [0.5],
            "volume": ["12"],
        }
    )
    path = tmp_path / "typed.parquet"
    frame.write_parquet(path)
    (verdict,) = validate_files([path], contract)
    assert [p.check for p in verdict.problems] == ["dtype('Int64')"]
    assert verdict.problems[0].message == "column 'volume' is String, expected Int64"
    assert verdict.fingerprint != contract.fingerprint


def test_excel_cells_holding_the_contract_values_are_valid(
    tmp_path: Path, contract: Contract
) -> None:
    """Date cells for a Date column, whole numbers for an Int64 one: valid; 2.5 is not."""
    good, bad = tmp_path / "good.xlsx", tmp_path / "bad.xlsx"
    for path, volume in ((good, 3), (bad, 2.5)):
        book = xlsxwriter.Workbook(str(path))
        sheet = book.add_worksheet()
        day = book.add_format({"num_format": "yyyy-mm-dd"})
        sheet.write_row(0, 0, ["date", "ticker", "signal", "volume"])
        sheet.write_datetime(1, 0, dt.datetime(2024, 1, 2), day)
        sheet.write_row(1, 1, ["AAPL", 0.5, volume])
        book.close()
    verdicts = validate_files([good, bad], contract)
    assert verdicts[0].valid and verdicts[0].fingerprint == contract.fingerprint
    assert [p.message for p in verdicts[1].problems] == [
        "volume: 1 value(s) are not int64 (rows 2: 2.5)"  # the sheet row
    ]


def test_bounded_report_for_a_million_bad_rows(contract: Contract) -> None:
    rows = 1_000_000
    frame = pl.select(
        (pl.lit(dt.date(2000, 1, 1)) + pl.duration(days=pl.int_range(0, rows))).alias("date"),
        pl.lit("AAPL").alias("ticker"),
        pl.lit(2.0).alias("signal"),
        pl.lit(-1, pl.Int64).alias("volume"),
    )
    verdict = validate_frame(frame, contract, path="big.parquet")
    found = problems_of(verdict)
    signal = found[("signal", "in_range(-1.0, 1.0)")]
    assert signal.count == rows
    assert signal.rows == tuple(range(1, MAX_EXAMPLES + 1))
    assert len(signal.values) == MAX_EXAMPLES
    assert found[("volume", "greater_than_or_equal_to(0)")].count == rows
    assert len(json.dumps(verdict.to_dict())) < 5_000


# ---------------------------------------------------------------------------- grouped


def test_grouped_failures_map_back_to_file_and_row(tmp_path: Path, contract: Contract) -> None:
    a = day_file(tmp_path, 2)
    b = csv(
        tmp_path / "b.csv",
        "2024-01-03,AAPL,0.1,1",
        "2024-01-03,MSFT,0.1,2",
        "2024-01-03,IBM,9.5,3",
    )
    c = csv(tmp_path / "c.csv", "2024-01-04,aapl,0.1,-1", "2024-01-04,MSFT,0.1,1")
    d = csv(tmp_path / "d.csv", "2024-01-05,AAPL,0.1,1", "2024-01-05,AAPL,0.2,2")
    grouped = validate_files([a, b, c, d], contract)
    assert [v.status for v in grouped] == ["valid", "invalid", "invalid", "invalid"]
    assert problems_of(grouped[1])[("signal", "in_range(-1.0, 1.0)")].rows == (3,)
    assert problems_of(grouped[1])[("signal", "in_range(-1.0, 1.0)")].values == ("9.5",)
    assert set(problems_of(grouped[2])) == {
        ("ticker", "str_matches('^[A-Z]+$')"),
        ("volume", "greater_than_or_equal_to(0)"),
    }
    assert problems_of(grouped[2])[("volume", "greater_than_or_equal_to(0)")].rows == (1,)
    # uniqueness holds per file: the same (date, ticker) in two files of a group is not a
    # within-file duplicate (that is UniqueKeys' job), but a repeat inside d.csv is
    assert problems_of(grouped[3])[("date, ticker", "multiple_fields_uniqueness")].rows == (1, 2)
    alone = [validate_files([p], contract)[0] for p in (a, b, c, d)]
    assert [v.problems for v in alone] == [v.problems for v in grouped]


def test_grouped_same_key_in_two_files_is_not_a_within_file_duplicate(
    tmp_path: Path, contract: Contract
) -> None:
    first = day_file(tmp_path, 2)
    again = csv(tmp_path / "again.csv", "2024-01-02,AAPL,0.3,5")
    assert all(v.valid for v in validate_files([first, again], contract))


def test_column_level_unique_is_per_file_in_a_group(tmp_path: Path) -> None:
    schema = pa.DataFrameSchema(
        {"id": pa.Column(pl.Int64, unique=True), "v": pa.Column(pl.Float64)},
        strict=True,
        ordered=True,
        name="ids",
    )
    contract = build_contract(schema)
    a = csv(tmp_path / "a.csv", "1,0.5", "2,0.5", header="id,v\n")
    b = csv(tmp_path / "b.csv", "1,0.5", "3,0.5", "3,0.1", header="id,v\n")
    verdicts = validate_files([a, b], contract)
    assert verdicts[0].valid
    problem = problems_of(verdicts[1])[("id", "field_uniqueness")]
    assert (problem.count, problem.rows, problem.values) == (2, (2, 3), ("3", "3"))


def test_mixed_layouts_in_one_call(tmp_path: Path, contract: Contract) -> None:
    good = day_file(tmp_path, 2)
    missing_a = csv(tmp_path / "m1.csv", "2024-01-03,AAPL,0.1", header="date,ticker,signal\n")
    missing_b = csv(tmp_path / "m2.csv", "2024-01-04,AAPL,0.1", header="date,ticker,signal\n")
    verdicts = validate_files([missing_a, good, missing_b], contract)
    assert [v.status for v in verdicts] == ["invalid", "valid", "invalid"]
    for verdict in (verdicts[0], verdicts[2]):
        assert [p.message for p in verdict.problems] == ["column 'volume' is missing"]
    groups = group_by_fingerprint(verdicts, contract)
    assert [g.matches_contract for g in groups] == [False, True]
    assert groups[0].paths == (missing_a, missing_b)
    assert groups[0].columns == ("date: date32[day]", "ticker: string", "signal: double")


def test_fingerprint_groups_report_odd_ones_first(tmp_path: Path, contract: Contract) -> None:
    normal = [day_file(tmp_path, d) for d in (2, 3, 4)]
    moved = csv(
        tmp_path / "moved.csv", "AAPL,2024-01-05,0.1,1", header="ticker,date,signal,volume\n"
    )
    short = csv(tmp_path / "short.csv", "2024-01-06,AAPL", header="date,ticker\n")
    short2 = csv(tmp_path / "short2.csv", "2024-01-07,AAPL", header="date,ticker\n")
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"")
    verdicts = validate_files([*normal, short, moved, short2, broken], contract)
    groups = group_by_fingerprint(verdicts, contract)
    assert [g.paths for g in groups] == [(moved,), (short, short2), tuple(normal)]
    assert json.dumps([g.to_dict() for g in groups])


def test_keep_frames_and_validate_frame(tmp_path: Path, contract: Contract) -> None:
    good, bad = day_file(tmp_path, 2), csv(tmp_path / "bad.csv", "2024-01-03,AAPL,5,1")
    verdicts = validate_files([good, bad], contract, keep_frames=True)
    assert verdicts[0].frame is not None and verdicts[0].frame.height == 2
    assert verdicts[1].frame is None
    again = validate_frame(verdicts[0].frame, contract, path=good)
    assert again.valid and again.path == good


def test_verdict_to_dict_is_json(tmp_path: Path, contract: Contract) -> None:
    bad = csv(tmp_path / "bad.csv", "2024-01-03,AAPL,5,1")
    (verdict,) = validate_files([bad], contract)
    payload = json.loads(json.dumps(verdict.to_dict()))
    assert payload["status"] == "invalid" and payload["valid"] is False
    assert payload["problems"][0]["rows"] == [1]
    assert payload["problems"][0]["message"].startswith("signal: in_range")


# ---------------------------------------------------------------------------- across files


def test_backfill_sending_the_same_day_twice(tmp_path: Path, contract: Contract) -> None:
    keys = UniqueKeys.for_contract(contract)
    monday = day_file(tmp_path, 2)
    (first,) = validate_files([monday], contract, keys=keys)
    assert first.valid
    rerun = tmp_path / "rerun"
    rerun.mkdir()
    monday_again = csv(rerun / "monday.csv", "2024-01-03,IBM,0.1,1", "2024-01-02,MSFT,0.2,2")
    tuesday = day_file(tmp_path, 3, ("AAPL",))
    verdicts = validate_files([monday_again, tuesday], contract, keys=keys)
    clash = verdicts[0].problems[0]
    assert clash.check == "unique_across_files"
    assert (clash.count, clash.rows) == (1, (2,))
    assert clash.detail == f"already in {monday}"
    assert verdicts[0].reason.endswith(f"already in {monday}")
    assert verdicts[1].valid


def test_unique_keys_within_one_group_and_invalid_files_do_not_claim(
    tmp_path: Path, contract: Contract
) -> None:
    keys = UniqueKeys.for_contract(contract)
    invalid = csv(tmp_path / "a-invalid.csv", "2024-01-02,AAPL,9,1")
    first = csv(tmp_path / "b-first.csv", "2024-01-02,AAPL,0.1,1")
    repeat = csv(tmp_path / "c-repeat.csv", "2024-01-02,AAPL,0.1,1")
    verdicts = validate_files([invalid, first, repeat], contract, keys=keys)
    assert [v.status for v in verdicts] == ["invalid", "valid", "invalid"]
    assert verdicts[2].problems[0].detail == f"already in {first}"
    assert len(keys) == 1


def test_a_groups_key_hashes_stand_in_for_the_within_file_check_only_when_all_distinct(
    tmp_path: Path, contract: Contract
) -> None:
    """With the run's keys, a group's key hashes are sorted once. All distinct, they
    prove every file's key unique (the proof and pandera leave that check out); one
    repeat anywhere and the group is checked in full. The verdicts are the same."""
    bad_value = csv(tmp_path / "b.csv", "2024-01-03,AAPL,0.1,1", "2024-01-03,MSFT,9.5,2")
    repeated = csv(tmp_path / "d.csv", "2024-01-05,AAPL,0.1,1", "2024-01-05,AAPL,0.2,2")
    distinct = [day_file(tmp_path, 2), bad_value, day_file(tmp_path, 4)]
    for paths in (distinct, [*distinct, repeated]):
        keys = UniqueKeys.for_contract(contract)
        verdicts = validate_files(paths, contract, keys=keys, keep_key_hashes=True)
        assert [v.problems for v in verdicts] == [
            v.problems for v in validate_files(paths, contract)
        ]
        assert [v.status for v in verdicts[:3]] == ["valid", "invalid", "valid"]
        assert problems_of(verdicts[1])[("signal", "in_range(-1.0, 1.0)")].rows == (2,)
        assert len(keys) == 4  # the valid files' keys, claimed
        assert all(v.key_hashes is not None for v in verdicts if v.valid)
    assert problems_of(verdicts[3])[("date, ticker", "multiple_fields_uniqueness")].rows == (1, 2)
    # a key in two files of the group: the later one repeats it, both otherwise valid
    again = csv(tmp_path / "again.csv", "2024-01-04,MSFT,0.3,5")
    keys = UniqueKeys.for_contract(contract)
    verdicts = validate_files([*distinct, again], contract, keys=keys)
    assert [v.status for v in verdicts] == ["valid", "invalid", "valid", "invalid"]
    assert verdicts[3].problems[0].check == "unique_across_files"
    assert verdicts[3].problems[0].detail == f"already in {distinct[2]}"


def test_unique_keys_many_files_many_runs() -> None:
    keys = UniqueKeys(("k",))
    for batch in range(20):
        items = [
            (
                Path(f"f{batch}-{i}.csv"),
                pl.DataFrame({"k": range(j := (batch * 10 + i) * 100, j + 100)}),
            )
            for i in range(10)
        ]
        assert keys.claim(items) == [None] * 10
    assert len(keys) == 20_000
    (clash,) = keys.claim([(Path("late.csv"), pl.DataFrame({"k": [5, 19_999, 20_000]}))])
    assert clash is not None
    assert (clash.count, clash.rows) == (2, (1, 2))
    assert clash.detail is not None and clash.detail.startswith("already in f")


def test_unique_keys_group_checked_at_once_still_names_the_right_file() -> None:
    keys = UniqueKeys(("k",))
    group = [(Path(f"g{i}.csv"), pl.DataFrame({"k": [i, i, 1000 + i]})) for i in range(50)]
    assert keys.claim(group) == [None] * 50  # no repeat anywhere: one lookup for all
    assert len(keys) == 100  # a key repeated inside one file is kept once
    later = [
        (Path("new.csv"), pl.DataFrame({"k": [5000]})),
        (Path("again.csv"), pl.DataFrame({"k": [5000, 1037]})),  # repeats new.csv and g37
    ]
    fresh, clash = keys.claim(later)
    assert fresh is None and clash is not None
    assert (clash.count, clash.rows) == (2, (1, 2))
    assert clash.detail in ("already in new.csv", "already in g37.csv")
    (again,) = keys.claim([(Path("late.csv"), pl.DataFrame({"k": [1049, 999]}))])
    assert again is not None and (again.detail, again.rows) == ("already in g49.csv", (1,))
    within = [
        (Path("w0.csv"), pl.DataFrame({"k": range(7000, 7100)})),
        (Path("w1.csv"), pl.DataFrame({"k": range(8000, 8100)})),
        (Path("w2.csv"), pl.DataFrame({"k": [*range(9000, 9098), 7050, 9099]})),
    ]
    *fine, repeat = keys.claim(within)  # a repeat between files of one group
    assert fine == [None, None] and repeat is not None
    assert (repeat.detail, repeat.rows) == ("already in w0.csv", (99,))


def test_unique_keys_large_files_keep_runs_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large file's keys are not merged with others' (no copy of them), and a repeat
    of them is still found and named, beside small files that are merged."""
    import batchload.check.crossfile

    monkeypatch.setattr(batchload.check.crossfile, "SOLO_RUN_ROWS", 50)
    keys = UniqueKeys(("k",))
    for number in range(3):  # "large": 100 rows each
        big = pl.DataFrame({"k": range(number * 1000, number * 1000 + 100)})
        assert keys.claim([(Path(f"big{number}.csv"), big)]) == [None]
    small = [(Path(f"s{i}.csv"), pl.DataFrame({"k": [5000 + i]})) for i in range(4)]
    assert keys.claim(small) == [None] * 4
    assert len(keys._runs) == 4  # three solo runs, and the small files' one
    assert len(keys) == 304
    (clash,) = keys.claim([(Path("late.csv"), pl.DataFrame({"k": [7, 1099, 5003]}))])
    assert clash is not None and clash.count == 3
    assert clash.detail in ("already in big0.csv", "already in big1.csv", "already in s3.csv")
    (alone,) = keys.claim([(Path("late2.csv"), pl.DataFrame({"k": [9999, 2050]}))])
    assert alone is not None and (alone.detail, alone.rows) == ("already in big2.csv", (2,))


def test_large_files_keys_live_in_the_spill_file_and_still_catch_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large file's run is moved out of memory and read back a slice at a time: a
    repeat at any slice's edge, of any large file, is still found, named and located,
    for hashes given in row order and given sorted (as blockwise validation gives them)."""
    import batchload.check.crossfile
    import batchload.check.keyruns

    monkeypatch.setattr(batchload.check.crossfile, "SOLO_RUN_ROWS", 50)
    monkeypatch.setattr(batchload.check.keyruns, "SPILL_READ_ROWS", 16)
    monkeypatch.setattr(batchload.check.keyruns, "LOOKUP_ROWS", 8)
    keys = UniqueKeys(("k",))
    for number in range(3):  # "large": 100 rows each, keys number*1000 .. +99
        big = pl.DataFrame({"k": range(number * 1000, number * 1000 + 100)})
        assert keys.claim([(Path(f"big{number}.csv"), big)]) == [None]
    assert all(isinstance(run, batchload.check.keyruns.SpilledRun) for run in keys._runs)
    assert len(keys) == 300
    edges = [0, 15, 16, 31, 32, 99]  # first, either side of a read slice, last
    for number in range(3):
        for edge in edges:
            late = pl.DataFrame({"k": [5000, number * 1000 + edge]})
            (clash,) = keys.claim([(Path("late.csv"), late)])
            assert clash is not None and (clash.count, clash.rows) == (1, (2,))
            assert clash.detail == f"already in big{number}.csv"
    hashes = keys.hashes(pl.DataFrame({"k": [7000, 7001, 1050, 7002]}))
    located: list[pl.Series] = []

    def rows(hit: pl.Series) -> tuple[int, ...]:
        located.append(hit)
        return (3,)

    ordered = batchload.check.crossfile.SortedHashes(hashes.sort().set_sorted(), rows)
    (clash,) = keys.claim_hashes([(Path("sorted.csv"), ordered)])
    assert clash is not None and (clash.count, clash.rows) == (1, (3,))
    assert clash.detail == "already in big1.csv"
    assert [hit.to_list() for hit in located] == [
        keys.hashes(pl.DataFrame({"k": [1050]})).to_list()
    ]
    fresh = keys.hashes(pl.DataFrame({"k": range(8000, 8100)})).sort().set_sorted()
    assert keys.claim_hashes(
        [(Path("big3.csv"), batchload.check.crossfile.SortedHashes(fresh, rows))]
    ) == [None]
    (again,) = keys.claim([(Path("late.csv"), pl.DataFrame({"k": [8099, 5000]}))])
    assert again is not None and (again.rows, again.detail) == ((1,), "already in big3.csv")


@pytest.fixture
def manifest(tmp_path: Path) -> Iterator[Manifest]:
    with Manifest.open(tmp_path / "m.sqlite") as opened:
        yield opened


def stored_keys(manifest: Manifest, scheme: str, blobs: Mapping[str, bytes]) -> Earlier:
    """``blobs`` stored in ``manifest`` as a run stores its files' keys; those files, as
    a later run starts from them."""
    manifest.write(
        [],
        keys=[
            FileKeys(dataset="d", source_path=path, scheme=scheme, hashes=blob)
            for path, blob in blobs.items()
        ],
    )
    return Earlier(manifest, "d", tuple(manifest.key_counts("d", scheme).items()))


def test_a_spilled_files_keys_are_read_back_for_the_manifest_and_catch_a_later_repeat(
    monkeypatch: pytest.MonkeyPatch, manifest: Manifest
) -> None:
    """The manifest gets a large file's hashes from the spill file (not kept in memory
    until the upload ends), exactly as a later run needs them to catch a repeat."""
    import batchload.check.crossfile

    monkeypatch.setattr(batchload.check.crossfile, "SOLO_RUN_ROWS", 50)
    keys = UniqueKeys(("k",))
    big = pl.DataFrame({"k": range(100)})
    small = pl.DataFrame({"k": [500, 501]})
    assert keys.claim([(Path("big.csv"), big)]) == [None]
    assert keys.claim([(Path("small.csv"), small)]) == [None]
    assert keys.stored(Path("small.csv")) is None  # kept in memory: to_bytes of its hashes
    read = keys.stored(Path("big.csv"))
    assert read is not None
    assert isinstance(read, KeyRun)
    blob = read.read()
    assert hashes_of(blob).sort().to_list() == keys.hashes(big).sort().to_list()
    later = UniqueKeys(("k",), earlier=stored_keys(manifest, keys.scheme, {"big.csv": blob}))
    (clash,) = later.claim([(Path("new.csv"), pl.DataFrame({"k": [1000, 42]}))])
    assert clash is not None and clash.rows == (2,)
    assert clash.detail == "already in big.csv, sent by an earlier run"


def test_no_unique_key_means_no_cross_file_check(tmp_path: Path) -> None:
    keys = UniqueKeys(())
    assert keys.claim([(Path("a"), pl.DataFrame({"x": [1]}))] * 2) == [None, None]


def test_unique_key_agrees_with_pandera_own_check(contract: Contract) -> None:
    """batchload runs the unique checks itself (faster); the failing rows must be pandera's."""
    schema = pa.DataFrameSchema(
        contract.schema.columns,
        strict=True,
        ordered=True,
        unique=["date", "ticker"],
        name="signals",
    )
    ours_contract = build_contract(schema)
    day = dt.date(2024, 1, 2)
    frame = pl.DataFrame(
        {
            "date": [day, day, day, day, day, day],
            "ticker": ["A", "B", "A", None, None, "A"],
            "signal": [0.1] * 6,
            "volume": [1] * 6,
        }
    )
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        schema.validate(frame, lazy=True)
    cases = caught.value.failure_cases.filter(pl.col("check") == "multiple_fields_uniqueness")
    theirs = tuple(sorted(i + 1 for i in cases.get_column("index").to_list()))
    verdict = validate_frame(frame, ours_contract)
    ours = problems_of(verdict)[("date, ticker", "multiple_fields_uniqueness")]
    assert (ours.count, ours.rows) == (len(theirs), theirs[:MAX_EXAMPLES])


@settings(
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([dt.date(2024, 1, 2), dt.date(2024, 1, 3), None]),
            st.sampled_from(["AAPL", "MSFT", "ibm", "", None]),
            st.one_of(st.none(), st.just(float("nan")), st.floats(-1.5, 1.5)),
            st.one_of(st.none(), st.integers(-2, 5)),
        ),
        max_size=6,
    ),
    grouped=st.booleans(),
)
def test_valid_verdict_is_pandera_verdict(
    rows: list[tuple[object, ...]], grouped: bool, contract: Contract
) -> None:
    """Frames proven valid without pandera are exactly those pandera itself accepts."""
    frame = pl.DataFrame(rows, schema=contract.polars_schema(), orient="row")
    try:
        contract.schema.validate(frame, lazy=True)
        pandera_says = True
    except pa.errors.SchemaErrors:
        pandera_says = False
    if grouped:  # beside a valid file, in one group
        other = pl.DataFrame(
            [(dt.date(2020, 1, 1), "ZZ", 0.0, 1)], schema=contract.polars_schema(), orient="row"
        )
        verdict = validate_chunk([(0, other), (1, frame)], contract)[1]
    else:
        verdict = validate_chunk([(0, frame)], contract)[0]
    ours = not [p for p in verdict if p.check != "no_rows"]
    assert ours == pandera_says, verdict


def test_unique_keys_start_from_the_files_an_earlier_run_sent(
    manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Earlier files (their hashes, as the manifest keeps them, read one file at a time
    here) catch a repeat, name the file, and are replaced by their own keys when
    validated again, so a changed file never repeats itself."""
    import batchload.check.crossfile

    monkeypatch.setattr(batchload.check.crossfile, "READ_FILES", 1)
    earlier = UniqueKeys(("k",))
    monday, tuesday = Path("/d/monday.csv"), Path("/d/tuesday.csv")
    frames = {monday: pl.DataFrame({"k": [1, 2, 3]}), tuesday: pl.DataFrame({"k": [4, 5]})}
    blobs = {str(p): bytes(UniqueKeys.to_bytes(earlier.hashes(f))) for p, f in frames.items()}

    keys = UniqueKeys(("k",), earlier=stored_keys(manifest, earlier.scheme, blobs))
    assert len(keys) == 5
    (clash,) = keys.claim([(Path("/d/resend.csv"), pl.DataFrame({"k": [9, 2]}))])
    assert clash is not None and (clash.count, clash.rows) == (1, (2,))
    assert clash.detail == f"already in {monday}, sent by an earlier run"
    # monday changed: its old keys go, its new ones count (3 dropped, 6 added)
    assert keys.claim([(monday, pl.DataFrame({"k": [1, 2, 6]}))]) == [None]
    assert keys.claim([(Path("/d/a.csv"), pl.DataFrame({"k": [3]}))]) == [None]
    (again,) = keys.claim([(Path("/d/b.csv"), pl.DataFrame({"k": [6, 5]}))])
    assert again is not None and again.count == 2


def test_earlier_keys_that_cannot_be_kept_stop_the_check_until_they_can(
    manifest: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No temporary directory for the earlier files' keys: no file passes unchecked; the
    error says what to do, and the next check reads them again."""
    import tempfile

    earlier = UniqueKeys(("k",))
    blob = bytes(UniqueKeys.to_bytes(earlier.hashes(pl.DataFrame({"k": [1, 2]}))))
    keys = UniqueKeys(("k",), earlier=stored_keys(manifest, earlier.scheme, {"/d/a.csv": blob}))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    repeat = [(Path("/d/b.csv"), pl.DataFrame({"k": [2]}))]
    with pytest.raises(BatchloadError, match="cannot keep the keys of the files earlier") as e:
        keys.claim(repeat)
    assert e.value.hint == "free space in the temporary directory, or point TMPDIR at a larger disk"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (clash,) = keys.claim(repeat)
    assert clash is not None and clash.detail == "already in /d/a.csv, sent by an earlier run"


def test_unique_key_hashes_round_trip_and_say_how_they_were_made(
    contract: Contract, manifest: Manifest
) -> None:
    keys = UniqueKeys.for_contract(contract)
    frame = pl.DataFrame({"date": [dt.date(2024, 1, 2)], "ticker": ["A"]})
    hashes = keys.hashes(frame)
    assert hashes_of(UniqueKeys.to_bytes(hashes)).to_list() == hashes.to_list()
    assert keys.scheme.startswith(f"polars {pl.__version__} hash_rows ")
    assert keys.scheme.endswith("date:Date,ticker:String")
    assert UniqueKeys(("date",)).scheme != keys.scheme
    earlier = stored_keys(manifest, UniqueKeys(()).scheme, {"/d/x.csv": b"\0" * 8})
    no_key = UniqueKeys((), earlier=earlier)  # no unique key: nothing kept
    assert no_key.claim([(Path("/d/y.csv"), frame)]) == [None] and len(no_key) == 0
