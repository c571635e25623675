"""The one-pass proof (``check/proof.py``): it says valid exactly when pandera does."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pandera.polars as pa
import polars as pl
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from batchload.check.proof import proven_valid
from batchload.check.rows import validate_chunk
from batchload.contract.model import Contract, build_contract
from tests.test_blockwise import signals


def every_kind() -> Contract:
    """Every row-wise built-in check, ``ignore_na: false``, a custom check over the
    frame (run as pandera's own query), nullable and not, NaN, a unique column and key."""
    schema = pa.DataFrameSchema(
        {
            "k": pa.Column(
                pl.Int64,
                [pa.Check.ge(0), pa.Check.le(5), pa.Check.ne(3), pa.Check.notin([4])],
                unique=True,
            ),
            "s": pa.Column(
                pl.String,
                [
                    pa.Check.str_matches(r"^[a-c]+$"),
                    pa.Check.str_contains("b"),
                    pa.Check.str_startswith("a"),
                    pa.Check.str_endswith("c"),
                    pa.Check.str_length(1, 4, ignore_na=False),
                ],
                nullable=True,
            ),
            "x": pa.Column(pl.Float64, [pa.Check.gt(-0.5)]),  # NaN passes: only null fails it
            "z": pa.Column(
                pl.Float64, [pa.Check.in_range(-1.0, 1.0), pa.Check.lt(0.5)], nullable=True
            ),
            "y": pa.Column(
                pl.Int64,
                [pa.Check.isin([1, 2]), pa.Check.le(2), pa.Check.eq(1)],
                nullable=True,
            ),
        },
        checks=[pa.Check(lambda data: data.lazyframe.select(pl.col("k") <= pl.col("x") + 5))],
        strict=True,
        ordered=True,
        unique=["k", "s"],
        name="every_kind",
    )
    return build_contract(schema)


CONTRACT = every_kind()
NAN = float("nan")
#: each column's values: the first ones of each pass every check, the others fail one
VALUES = (
    [0, 1, 2, 5, 3, 4, 6, -1],
    ["abc", "abbc", "abcc", None, "bc", "abcbc", "abd", ""],
    [0.0, 0.5, 1.0, NAN, None, -0.5],
    [0.0, -1.0, None, NAN, 0.5, 1.5],
    [1, None, 2, 3],
)
VALID = (4, 3, 3, 3, 2)  # how many of each column's values pass


@st.composite
def frames(draw: st.DrawFn) -> list[tuple[object, ...]]:
    """A valid frame (distinct ``k``), then up to two cells set to any value: a fault, or not."""
    valid_row = st.tuples(*(st.sampled_from(v[:n]) for v, n in zip(VALUES, VALID, strict=True)))
    rows = draw(st.lists(valid_row, max_size=4, unique_by=lambda r: r[0]))
    for _ in range(draw(st.integers(0, 2)) if rows else 0):
        index, column = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, 4))
        changed = list(rows[index])
        changed[column] = draw(st.sampled_from(VALUES[column]))
        rows[index] = tuple(changed)
    return rows


def pandera_says(frame: pl.DataFrame) -> bool:
    """pandera's verdict; not lazy: it stops at the first failure, the verdict is the same."""
    try:
        CONTRACT.schema.validate(frame)
    except pa.errors.SchemaError:
        return False
    return True


def test_proof_agrees_with_pandera_on_every_kind_of_check() -> None:
    """Proven valid exactly when pandera says valid: alone (both ways: a valid frame
    the proof cannot prove costs a pandera call) and, one time in four, beside a valid
    file in one group (where a wrong proof would pass a bad file)."""
    seen: Counter[bool] = Counter()
    other = pl.DataFrame([(0, "abc", 0.0, None, 1)], schema=CONTRACT.polars_schema(), orient="row")

    @seed(20261205)
    @settings(
        max_examples=300,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(rows=frames(), grouped=st.integers(0, 3).map(lambda n: n == 0))
    def agree(rows: list[tuple[object, ...]], grouped: bool) -> None:
        frame = pl.DataFrame(rows, schema=CONTRACT.polars_schema(), orient="row")
        expected = pandera_says(frame)
        seen[expected] += 1
        assert proven_valid(frame, CONTRACT, grouped=False) == expected, rows
        if grouped:
            problems = validate_chunk([(0, other), (1, frame)], CONTRACT)
            assert not problems[0]
            assert (not [p for p in problems[1] if p.check != "no_rows"]) == expected, rows

    agree()
    assert min(seen[True], seen[False]) >= 100, seen  # both verdicts well sampled


def test_valid_frames_are_proven_without_a_pandera_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast proof must really work, and its built-in checks join its one select
    (as hand-written Polars would) instead of running as a query each, pandera's own
    way and ~5% slower on 1M rows: a pandera upgrade could quietly undo either."""
    from pandera.backends.polars.checks import PolarsCheckBackend

    def no_query_of_its_own(self: object, check_obj: object) -> object:
        raise AssertionError("a built-in check ran as a query of its own")

    contract = signals()
    monkeypatch.setattr(PolarsCheckBackend, "apply", no_query_of_its_own)
    frame = pl.DataFrame(
        [(dt.date(2024, 1, 2), "AAPL", 0.5, 1), (dt.date(2024, 1, 2), "MSFT", None, 2)],
        schema=contract.polars_schema(),
        orient="row",
    )
    assert proven_valid(frame, contract, grouped=False)
    assert not proven_valid(frame.with_columns(pl.lit(-1).alias("volume")), contract, False)
    assert not proven_valid(frame.select(reversed(frame.columns)), contract, False)
    assert not proven_valid(pl.concat([frame, frame]), contract, False)
