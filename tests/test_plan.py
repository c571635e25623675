"""TOML plans: jobs with paths relative to the plan, run settings, and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchload.errors import UsageError
from batchload.pipeline.plan import load_plan


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plans" / "backfill.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_plan_with_two_datasets(tmp_path: Path) -> None:
    plan = load_plan(
        write(
            tmp_path,
            """
[run]
concurrency = 4
max_request_mb = 2.5
manifest = "state/run.sqlite"

[[upload]]
schema = "../schemas/equity_signals.yaml"
files = ["signals/*.csv", "extra.csv"]
file_id = "{stem}-{sha8}"

[[upload]]
schema = "../schemas/market_prices.yaml"
files = "prices/**/*.parquet"
dataset_id = "ds-1"
sheet = "Prices"
""",
        )
    )
    base = (tmp_path / "plans").resolve()
    assert (plan.concurrency, plan.max_request_mb, plan.manifest) == (
        4,
        2.5,
        base / "state/run.sqlite",
    )
    first, second = plan.jobs
    assert first.files == ("signals/*.csv", "extra.csv") and first.base == base
    assert first.schema == base / "../schemas/equity_signals.yaml"
    assert first.file_id == "{stem}-{sha8}" and first.dataset is None
    assert (second.files, second.dataset_id, second.sheet) == (
        ("prices/**/*.parquet",),
        "ds-1",
        "Prices",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[upload]]\nfiles = ['a.csv']\n", "needs schema"),
        ("[[upload]]\nschema = 's.yaml'\n", "needs files"),
        ("[[upload]]\nschema = 's.yaml'\nfiles = ['a']\nfiel_id = 'x'\n", "unknown key"),
        (
            "[run]\nconcurrency = 'many'\n[[upload]]\nschema = 's'\nfiles = ['a']\n",
            "must be a number",
        ),
        ("[[upload]]\nschema = 's'\nfiles = ['a']\ndataset = 'a'\ndataset_id = 'b'\n", "not both"),
        ("[[upload]]\nschema = 's'\nfiles = ['a']\nfile_id = '{oops}'\n", "unknown field"),
        ("[run]\n", r"no \[\[upload\]\] blocks"),
        ("[[upload]\n", "not valid TOML"),
        ("[[uploads]]\nschema = 's'\n", "unknown table"),
    ],
)
def test_bad_plans_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_plan(write(tmp_path, text))


def test_missing_plan(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such plan"):
        load_plan(tmp_path / "nope.toml")
