"""What batchload relies on in pandera beyond its documented API (``contract/pandera_compat``).

A pandera upgrade that changes any of it fails here first: contracts load as pandera's
own loader loads them, and without pandas; built-in checks are still plain Polars
expressions; a check that raised is still reported as the error's repr.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandera.polars as pa
import polars as pl
import pytest
from pandera.api.checks import Check
from pandera.backends.polars import builtin_checks
from pandera.io.polars_io import from_yaml, serialize_schema

from batchload.check.proof import ROW_WISE_CHECKS
from batchload.contract.model import contract_from_yaml, contract_to_yaml
from batchload.contract.pandera_compat import (
    builtin_name,
    check_error_text,
    check_expression,
    polars_backend,
    schema_to_document,
)
from batchload.errors import ContractError

CONTRACTS = sorted((Path(__file__).parent.parent / "schemas").glob("*.yaml"))

#: Every built-in check pandera 0.35 has for polars, each with its own options, a
#: Datetime, a Date and a Duration statistic, and the older list form of ``checks:``.
EVERY_CHECK = """\
schema_type: polars_dataframe
columns:
  n:
    dtype: Int64
    equal_to: 1
    not_equal_to: 2
    greater_than: 0
    greater_than_or_equal_to: 1
    less_than: 10
    less_than_or_equal_to: 9
    in_range: {min_value: 0, max_value: 10, include_min: false, include_max: true}
    isin: [1, 3]
    notin: [4, 5]
    unique_values_eq: [1]
  s:
    dtype: String
    nullable: true
    str_matches: {pattern: '^[a-z]+$', ignore_na: false, error: lower case}
    str_contains: {pattern: a, raise_warning: true}
    str_startswith: a
    str_endswith: {string: z, n_failure_cases: 3}
    str_length: {min_value: 1, max_value: 5}
  at:
    dtype: Datetime(time_unit='us', time_zone=None)
    in_range: {min_value: '2024-01-02 03:04:05', max_value: '2025-01-01 00:00:00'}
    greater_than_or_equal_to: '2024-01-02 03:04:05'
  day:
    dtype: Date
    greater_than: 2024-01-01
    isin: [2024-01-02, 2024-01-03]
  wait:
    dtype: Duration(time_unit='us')
    checks:
    - value: 1500000000
      options: {check_name: greater_than_or_equal_to}
strict: true
ordered: true
unique: [n, s]
name: every_check
"""


def pandera_loads(text: str) -> pa.DataFrameSchema:
    """pandera's own loader (it needs pandas, which dev has; it ignores ``metadata``)."""
    return from_yaml(text)  # type: ignore[no-untyped-call, no-any-return]


def statistics(schema: pa.DataFrameSchema) -> list[tuple[str, str, Any, dict[str, Any]]]:
    """Each column check: its column, name, statistics and options, comparable across loaders."""
    return [
        (
            name,
            check.name,
            check.statistics,
            {k: getattr(check, k) for k in ("ignore_na", "raise_warning", "n_failure_cases")},
        )
        for name, column in schema.columns.items()
        for check in column.checks
    ]


# ---------------------------------------------------------------------------- loading


@pytest.mark.parametrize("text", [*(p.read_text() for p in CONTRACTS), EVERY_CHECK])
def test_contracts_load_as_pandera_own_loader_loads_them(text: str) -> None:
    ours = contract_from_yaml(text).schema
    theirs = pandera_loads(text)
    ours.metadata = None  # batchload's block; pandera's loader ignores it
    assert schema_to_document(ours) == serialize_schema(theirs)
    assert statistics(ours) == statistics(theirs)  # datetime == pd.Timestamp, and so on
    again = contract_from_yaml(contract_to_yaml(contract_from_yaml(text)))
    assert statistics(again.schema) == statistics(ours)


def test_the_test_contract_has_every_builtin_check() -> None:
    """A built-in added by an upgrade must join EVERY_CHECK (and be loaded alike)."""
    named = {name for _, name, _, _ in statistics(contract_from_yaml(EVERY_CHECK).schema)}
    assert named == {
        name
        for name, fn in vars(builtin_checks).items()
        if inspect.isfunction(fn) and fn.__module__ == builtin_checks.__name__
    }


def test_statistics_without_pandas_are_the_plain_python_types() -> None:
    checks = {(c, n): s for c, n, s, _ in statistics(contract_from_yaml(EVERY_CHECK).schema)}
    at = checks[("at", "greater_than_or_equal_to")]["min_value"]
    assert type(at) is dt.datetime and at == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert checks[("day", "greater_than")]["min_value"] == dt.date(2024, 1, 1)
    wait = checks[("wait", "greater_than_or_equal_to")]["min_value"]
    assert type(wait) is dt.timedelta and wait == dt.timedelta(seconds=1.5)


@pytest.mark.filterwarnings("ignore::pandera.errors.SchemaWarning")  # raise_warning: true
def test_both_loaders_judge_a_frame_alike() -> None:
    frame = pl.DataFrame(
        {
            "n": [1, 3, 12],
            "s": ["abz", None, "Xyz"],
            "at": [dt.datetime(2024, 1, 2, 3, 4, 5), dt.datetime(2023, 1, 1), None],
            "day": [dt.date(2024, 1, 2), dt.date(2024, 1, 1), dt.date(2024, 1, 3)],
            "wait": [dt.timedelta(seconds=2)] * 3,  # pandera cannot report a failing duration
        }
    )
    text = EVERY_CHECK.replace("    unique_values_eq: [1]\n", "")  # its report is a bool:
    reports = []  # pandera cannot concatenate it with the others
    for schema in (contract_from_yaml(text).schema, pandera_loads(text)):
        with pytest.raises(pa.errors.SchemaErrors) as caught:
            schema.validate(frame, lazy=True)
        reports.append(caught.value.failure_cases.sort(pl.all()).to_dicts())
    assert reports[0] == reports[1]
    assert len(reports[0]) > 10


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("    dtype: Int65\n", "column 'a': unknown dtype 'Int65'"),
        (
            "    dtype: Int64\n    checks:\n    - value: 1\n      options: {check_name: bigger}\n",
            "column 'a': unknown check 'bigger'",
        ),
        ("    dtype: Int64\n    in_range: 5\n", "column 'a': "),
    ],
)
def test_a_column_pandera_cannot_build_is_named(column: str, message: str) -> None:
    text = f"schema_type: polars_dataframe\ncolumns:\n  a:\n{column}strict: true\nordered: true\n"
    with pytest.raises(ContractError) as caught:
        contract_from_yaml(text, path=Path("c.yaml"))
    assert str(caught.value).startswith(f"c.yaml: {message}")


# ---------------------------------------------------------------------------- without pandas

#: Runs before anything else in the child: ``import pandas`` fails as it does where
#: pandas is not installed, and who tried is written to stderr at exit.
NO_PANDAS = """\
import atexit, json, sys
tried = []
class NoPandas:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] != "pandas":
            return None
        frame = sys._getframe(1)
        while frame and "importlib" in frame.f_code.co_filename:
            frame = frame.f_back
        tried.append(frame.f_code.co_filename if frame else "?")
        raise ModuleNotFoundError("No module named 'pandas'", name="pandas")
sys.meta_path.insert(0, NoPandas())
atexit.register(lambda: print("PANDAS " + json.dumps(tried), file=sys.stderr))
"""

GOOD_ROWS = {
    "equity_signals": "date,ticker,signal,confidence,horizon_days\n2024-01-02,AAPL,0.5,,5\n",
    "market_prices": (
        "date,ticker,open,high,low,close,volume,currency\n2024-01-02,AAPL,1.0,2.0,0.5,1.5,100,USD\n"
    ),
}


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda p: p.stem)
def test_contracts_load_and_validate_without_pandas(tmp_path: Path, contract: Path) -> None:
    """The bug this pins: pandera's loader needed pandas, which a default install lacks."""
    good = tmp_path / "good.csv"
    good.write_text(GOOD_ROWS[contract.stem])
    bad = tmp_path / "bad.csv"  # one row, every value check broken where a column has one
    bad.write_text(GOOD_ROWS[contract.stem].replace("AAPL", "aapl").replace(",1.0,", ",-1.0,"))
    script = NO_PANDAS + textwrap.dedent(
        f"""
        from batchload.cli import main
        main(["validate", {str(good)!r}, {str(bad)!r}, "--schema", {str(contract)!r}, "--json"])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    verdicts = {Path(f["path"]).name: f for f in json.loads(done.stdout)["files"]}
    assert verdicts["good.csv"]["status"] == "valid"
    assert verdicts["bad.csv"]["status"] == "invalid"
    assert "ticker" in {p["column"] for p in verdicts["bad.csv"]["problems"]}
    tried = json.loads(done.stderr.rsplit("PANDAS ", 1)[1])
    # polars and pandera try pandas as an optional extra; neither batchload nor the
    # contract loader may reach for it
    assert tried, "the prelude did not take effect"
    assert not [f for f in tried if "batchload" in Path(f).parts or "io" in Path(f).parts], tried


# ---------------------------------------------------------------------------- checks


def test_row_wise_builtins_are_named_and_are_one_expression_each() -> None:
    """The proof's fast path: each row-wise built-in is a plain ``select`` of one
    expression that pandera's backend builds; a custom check has no built-in name."""
    frame = pl.LazyFrame({"x": [1]})
    made = {
        "str_matches": Check.str_matches("a"),
        "str_contains": Check.str_contains("a"),
        "str_startswith": Check.str_startswith("a"),
        "str_endswith": Check.str_endswith("a"),
        "str_length": Check.str_length(1, 2),
        "in_range": Check.in_range(0, 1),
        "isin": Check.isin([1]),
        "notin": Check.notin([1]),
        "equal_to": Check.eq(1),
        "not_equal_to": Check.ne(1),
        "greater_than": Check.gt(1),
        "greater_than_or_equal_to": Check.ge(1),
        "less_than": Check.lt(1),
        "less_than_or_equal_to": Check.le(1),
    }
    assert set(made) == ROW_WISE_CHECKS
    for name, check in made.items():
        assert builtin_name(check) == name
        backend = polars_backend(check, frame)
        assert backend is not None
        assert isinstance(check_expression(backend, "x"), pl.Expr), name
    custom = Check(lambda data: data.lazyframe.select(pl.col(data.key) > 0))
    assert builtin_name(custom) is None


def test_a_check_that_raised_is_read_back_from_pandera_report() -> None:
    schema = pa.DataFrameSchema({"a": pa.Column(pl.Int64, pa.Check.ge("zero"))})
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        schema.validate(pl.DataFrame({"a": [1]}), lazy=True)
    case = caught.value.failure_cases.row(0, named=True)["failure_case"]
    assert check_error_text(case) == "cannot compare string with numeric type (i64)"
    assert check_error_text("abc") is None
    assert check_error_text('ValueError("one line")') == "one line"
