"""Contracts load as written, and checks cannot be switched off from outside."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchload.contract.model import contract_from_yaml, contract_to_yaml
from batchload.contract.reading import Reading
from batchload.errors import ContractError

COUNTRIES = """\
schema_type: polars_dataframe
columns:
  country:
    dtype: String
    isin: [NO, SE, ON, yes]
  flag:
    dtype: Boolean
    isin: [true, False]
strict: true
ordered: true
name: countries
"""


def test_yaml_scalars_load_with_yaml_1_2_booleans() -> None:
    contract = contract_from_yaml(COUNTRIES)
    country, flag = contract.schema.columns["country"], contract.schema.columns["flag"]
    assert country.checks[0].statistics["allowed_values"] == ["NO", "SE", "ON", "yes"]
    assert flag.checks[0].statistics["allowed_values"] == [True, False]
    again = contract_from_yaml(contract_to_yaml(contract))  # written back quoted
    assert again.schema.columns["country"].checks[0].statistics["allowed_values"][0] == "NO"


READING = (
    COUNTRIES
    + """\
metadata:
  batchload:
    null_values: ["N/A", "-"]
    sheet: Data
    header_row: 3
"""
)


def test_reading_settings_round_trip() -> None:
    contract = contract_from_yaml(READING)
    assert contract.reading == Reading(null_values=("N/A", "-"), sheet="Data", header_row=3)
    assert contract.convert_options()["null_values"] == ["", "N/A", "-"]
    assert contract_from_yaml(contract_to_yaml(contract)).reading == contract.reading


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("null_values: N/A", "`metadata.batchload.null_values` must be a list of texts"),
        ("null_values: [1]", "`metadata.batchload.null_values` must be a list of texts"),
        ("header_row: 0", "`metadata.batchload.header_row` must be a row number"),
        ("sheet: [a]", "`metadata.batchload.sheet` must be a sheet name or number"),
        ("nulls: []", "unknown key `metadata.batchload.nulls`"),
    ],
)
def test_bad_reading_settings_are_refused(block: str, message: str) -> None:
    with pytest.raises(ContractError, match=message.replace("[", r"\[")):
        contract_from_yaml(COUNTRIES + f"metadata:\n  batchload:\n    {block}\n")


@pytest.mark.parametrize(
    "env",
    [{"PANDERA_VALIDATION_ENABLED": "False"}, {"PANDERA_VALIDATION_DEPTH": "SCHEMA_ONLY"}],
)
def test_pandera_environment_cannot_switch_checks_off(tmp_path: Path, env: dict[str, str]) -> None:
    schema = tmp_path / "countries.yaml"
    schema.write_text(COUNTRIES)
    bad = tmp_path / "bad.csv"
    bad.write_text("country,flag\nNO,true\nDK,false\n")
    result = subprocess.run(
        [sys.executable, "-m", "batchload", "validate", str(bad), "--schema", str(schema)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "country: isin(" in result.stdout and "(rows 2: DK)" in result.stdout
