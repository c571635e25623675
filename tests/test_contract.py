"""Contracts: the pandera YAML round trip we rely on, malformed files, diffs, inference."""

from __future__ import annotations

from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest
import yaml

from batchload.contract.infer import infer_contract
from batchload.contract.model import (
    Contract,
    build_contract,
    contract_from_yaml,
    contract_to_yaml,
    diff_locked,
    dump_contract,
    load_contract,
    schema_fingerprint,
)
from batchload.errors import ContractError, UsageError
from batchload.read.frames import read_samples

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def signals_schema() -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "date": pa.Column(pl.Date),
            "ticker": pa.Column(pl.String, pa.Check.str_matches(r"^[A-Z]+$"), unique=False),
            "signal": pa.Column(pl.Float64, pa.Check.in_range(-1.0, 1.0)),
            "weight": pa.Column(pl.Float64, [pa.Check.ge(0.0), pa.Check.le(1.0)], nullable=True),
            "bucket": pa.Column(pl.Int64, pa.Check.isin([1, 2, 3])),
            "ts": pa.Column(pl.Datetime("ns"), nullable=True),
        },
        strict=True,
        ordered=True,
        unique=["date", "ticker"],
        name="signals",
    )


# ---------------------------------------------------------------------------- round trip


def test_pandera_round_trips_what_we_rely_on() -> None:
    """pandera 0.35 itself: unique, nullable, built-in checks, strict/ordered, name."""
    schema = signals_schema()
    again = pa.DataFrameSchema.from_yaml(schema.to_yaml())
    assert again.unique == ["date", "ticker"]
    assert again.strict is True and again.ordered is True
    assert again.name == "signals"
    assert [c.nullable for c in again.columns.values()] == [False, False, False, True, False, True]
    labels = {n: [ch.error for ch in c.checks] for n, c in again.columns.items()}
    assert labels == {
        "date": [],
        "ticker": ["str_matches('^[A-Z]+$')"],
        "signal": ["in_range(-1.0, 1.0)"],
        "weight": ["greater_than_or_equal_to(0.0)", "less_than_or_equal_to(1.0)"],
        "bucket": ["isin([1, 2, 3])"],
        "ts": [],
    }
    assert again.columns["ts"].dtype.type == pl.Datetime("ns")


def test_pandera_does_not_serialize_metadata() -> None:
    """Why batchload writes its own ``metadata`` block: pandera drops it."""
    schema = signals_schema()
    schema.metadata = {"batchload": {"arrow_types": {"date": "date32[day]"}}}
    assert "metadata" not in yaml.safe_load(schema.to_yaml())


def test_contract_round_trip(tmp_path: Path) -> None:
    contract = build_contract(signals_schema(), arrow_types={"ticker": "large_string"})
    path = dump_contract(contract, tmp_path / "signals.yaml")
    loaded = load_contract(path)
    assert loaded.path == path
    assert loaded.dataset_name == "signals"
    assert loaded.unique == ("date", "ticker")
    assert loaded.fingerprint == contract.fingerprint
    assert loaded.columns == contract.columns
    assert loaded.column_types() == {
        "date": "date32[day]",
        "ticker": "string",
        "signal": "double",
        "weight": "double",
        "bucket": "int64",
        "ts": "timestamp[ns]",
    }
    assert loaded.polars_schema()["ts"] == pl.Datetime("ns")
    assert loaded.schema.metadata == {"batchload": {"arrow_types": loaded.column_types()}}
    assert contract_to_yaml(loaded) == path.read_text()


def test_pandera_loads_a_contract_file_unchanged(tmp_path: Path) -> None:
    """A pandera user can use the file as it is: the extra block is ignored by pandera."""
    for path in sorted(SCHEMAS.glob("*.yaml")):
        contract = load_contract(path)
        plain = pa.DataFrameSchema.from_yaml(path)
        assert plain.to_yaml() == contract.schema.to_yaml()
        assert yaml.safe_load(path.read_text())["schema_type"] == "polars_dataframe"


def test_example_contracts() -> None:
    signals = load_contract(SCHEMAS / "equity_signals.yaml")
    prices = load_contract(SCHEMAS / "market_prices.yaml")
    assert signals.dataset_name == "equity_signals"
    assert prices.dataset_name == "market_prices"
    assert signals.unique == prices.unique == ("date", "ticker")
    assert prices.names[:2] == ("date", "ticker")
    assert {"open", "high", "low", "close", "volume"} <= set(prices.names)
    assert any(ch.name == "in_range" for ch in signals.schema.columns["signal"].checks), (
        "the signal has a range check"
    )


def test_fingerprint_is_ordered_names_and_types() -> None:
    a = schema_fingerprint([("a", "int64"), ("b", "string")])
    assert a == schema_fingerprint([("a", "int64"), ("b", "large_string")])
    assert a != schema_fingerprint([("b", "string"), ("a", "int64")])
    assert a != schema_fingerprint([("a", "double"), ("b", "string")])


def test_dataset_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "prices_eu.yaml"
    path.write_text(
        "schema_type: polars_dataframe\ncolumns:\n  a:\n    dtype: Int64\n"
        "strict: true\nordered: true\n"
    )
    assert load_contract(path).dataset_name == "prices_eu"


# ---------------------------------------------------------------------------- malformed

GOOD = """\
schema_type: polars_dataframe
columns:
  a:
    dtype: Int64
    ge: 0
  b:
    dtype: String
strict: true
ordered: true
name: ds
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1, 2\n", "not valid YAML at line"),
        ("- 1\n- 2\n", "not a pandera polars schema"),
        (GOOD.replace("polars_dataframe", "dataframe"), "schema_type is 'dataframe'"),
        (GOOD.replace("Int64", "Int65"), "column 'a': unknown dtype 'Int65'"),
        (
            GOOD.replace("ge: 0", "greater_than_or_equals: 0"),
            "unknown key 'greater_than_or_equals'",
        ),
        (GOOD.replace("ge: 0", "ge: zero"), "column 'a': check greater_than_or_equal_to(zero)"),
        (GOOD.replace("ge: 0", "in_range: 5"), "column 'a'"),
        (GOOD.replace("strict: true", "strict: false"), "strict: true"),
        (GOOD.replace("ordered: true\n", ""), "ordered: true"),
        (GOOD + "coerce: true\n", "coerce: true"),
        (GOOD + "unique: [a, c]\n", "unknown column 'c'"),
        (GOOD + "extra_key: 1\n", "unknown top-level key 'extra_key'"),
        (GOOD + "metadata:\n  batchload:\n    arrow_types:\n      a: int65\n", "not an Arrow type"),
        (GOOD + "metadata:\n  batchload:\n    arrow_types:\n      a: string\n", "does not hold"),
        (
            GOOD + "metadata:\n  batchload:\n    arrow_types:\n      z: string\n",
            "unknown column 'z'",
        ),
        ("schema_type: polars_dataframe\ncolumns: {}\n", "`columns:` must map"),
        ("schema_type: polars_dataframe\ncolumns:\n  a:\n", "column 'a': expected a mapping"),
    ],
)
def test_malformed_contract_names_file_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ContractError) as caught:
        load_contract(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_missing_contract_file(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"nope\.yaml: no such contract file"):
        load_contract(tmp_path / "nope.yaml")


def test_good_contract_text_loads() -> None:
    contract = contract_from_yaml(GOOD)
    assert contract.names == ("a", "b")
    assert contract.columns[0].nullable is False


# ---------------------------------------------------------------------------- diff


def _contract(*columns: tuple[str, type[pl.DataType] | pl.DataType]) -> Contract:
    schema = pa.DataFrameSchema(
        {n: pa.Column(d) for n, d in columns}, strict=True, ordered=True, name="ds"
    )
    return build_contract(schema)


def test_diff_locked_matching_schema_with_aliases() -> None:
    contract = _contract(("a", pl.Int64), ("b", pl.String), ("c", pl.Float64))
    locked = [
        {"name": "a", "type": "int64"},
        {"name": "b", "type": "large_string"},
        {"name": "c", "type": "float64"},
    ]
    assert diff_locked(contract, locked) == []


def test_diff_locked_column_by_column() -> None:
    contract = _contract(("b", pl.String), ("a", pl.Int64), ("x", pl.Float64), ("d", pl.Date))
    locked = [
        {"name": "a", "type": "int64"},
        {"name": "b", "type": "string"},
        {"name": "c", "type": "double"},
        {"name": "d", "type": "timestamp[ms]"},
    ]
    found = {(d.kind, d.column): d.to_dict() for d in diff_locked(contract, locked)}
    assert found == {
        ("missing", "c"): {"kind": "missing", "column": "c", "expected": "double"},
        ("extra", "x"): {"kind": "extra", "column": "x", "actual": "double"},
        # a and b swapped: one of them moved, the other kept the locked order
        ("reordered", "b"): {
            "kind": "reordered",
            "column": "b",
            "expected_position": 1,
            "actual_position": 0,
        },
        ("type", "d"): {
            "kind": "type",
            "column": "d",
            "expected": "timestamp[ms]",
            "actual": "date32[day]",
        },
    }
    assert all(str(d) for d in diff_locked(contract, locked))


# ---------------------------------------------------------------------------- infer


def test_infer_single_file(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    # an empty field is null in every column, text included
    path.write_text("date,ticker,signal,weight\n2024-01-02,AAPL,0.5,\n2024-01-03,,1,2\n")
    contract, drift = infer_contract(read_samples([path]), "signals")
    assert drift == []
    assert contract.dataset_name == "signals"
    assert contract.polars_schema() == {
        "date": pl.Date,
        "ticker": pl.String,
        "signal": pl.Float64,
        "weight": pl.Int64,
    }
    assert [c.nullable for c in contract.columns] == [False, True, False, True]
    assert all(not c.checks for c in contract.schema.columns.values())
    again = contract_from_yaml(contract_to_yaml(contract))
    assert again.fingerprint == contract.fingerprint


def test_infer_reports_drift_instead_of_picking_silently(tmp_path: Path) -> None:
    first = tmp_path / "d1.csv"
    first.write_text("date,ticker,price,volume\n2024-01-02,AAPL,1,10\n")
    floats = tmp_path / "d2.csv"
    floats.write_text("date,ticker,price,volume\n2024-01-03,AAPL,1.5,11\n")
    empty = tmp_path / "d3.csv"
    empty.write_text("date,ticker,price,volume\n2024-01-04,AAPL,2,\n")
    moved = tmp_path / "d4.csv"
    moved.write_text("ticker,date,price,volume\nAAPL,2024-01-05,2,12\n")
    contract, drift = infer_contract(read_samples([first, floats, empty, moved]), "prices")
    kinds = {(d.kind, d.column) for d in drift}
    assert ("type", "price") in kinds
    assert ("empty", "volume") in kinds
    assert ("reordered", "ticker") in kinds
    assert contract.polars_schema()["price"] == pl.Float64
    assert contract.polars_schema()["volume"] == pl.Int64
    assert contract.names == ("date", "ticker", "price", "volume")
    by_column = {d.column: d for d in drift}
    assert by_column["volume"].paths == (empty,)
    assert by_column["price"].paths == (floats,)
    assert "Float64 in 1 file(s); the contract takes Float64" in by_column["price"].detail


def test_infer_reports_missing_and_extra_columns(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("x,y\n1,2\n")
    b = tmp_path / "b.csv"
    b.write_text("x,z\n1,2\n")
    contract, drift = infer_contract(read_samples([a, b]), "ds")
    assert contract.names == ("x", "y", "z")
    assert {(d.kind, d.column, d.paths) for d in drift} == {
        ("missing", "y", (b,)),
        ("extra", "z", (a,)),
    }


def test_infer_names_an_unreadable_sample(tmp_path: Path) -> None:
    good = tmp_path / "a.csv"
    good.write_text("x\n1\n")
    empty = tmp_path / "b.csv"
    empty.write_bytes(b"")
    with pytest.raises(UsageError, match=rf"cannot infer from {empty}: empty file"):
        infer_contract(read_samples([good, empty]), "ds")
