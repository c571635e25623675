"""The CLI over contracts: validate and schema infer/show/diff, exit codes and messages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests

from batchload.cli import main
from batchload.contract.model import load_contract
from batchload.server.process import ServerProcess

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
SIGNALS = SCHEMAS / "equity_signals.yaml"
HEADER = "date,ticker,signal,confidence,horizon_days\n"

Run = tuple[int, str, str]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """Run the CLI in-process, as the console script does; (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def signal_file(path: Path, *rows: str) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    signal_file(folder / "2024-01-02.csv", "2024-01-02,AAPL,0.5,0.9,5", "2024-01-02,MSFT,-0.2,,21")
    signal_file(folder / "2024-01-03.csv", "2024-01-03,AAPL,0.1,0.5,5")
    return folder


# ---------------------------------------------------------------------------- validate


def test_validate_all_valid_exit_0(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    code, out, err = run(capsys, "validate", str(data / "*.csv"), "--schema", str(SIGNALS))
    assert code == 0, err
    assert f"{data / '2024-01-02.csv'}: valid (2 rows)" in out
    assert "2 file(s) against equity_signals: 2 valid, 0 invalid, 0 unreadable" in out


def test_validate_some_invalid_exit_1(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    signal_file(data / "2024-01-04.csv", "2024-01-04,AAPL,1.5,0.9,5", "2024-01-04,MSFT,0.1,2,7")
    signal_file(data / "2024-01-05.csv", "2024-01-05,AAPL,0.2,0.9,5")
    (data / "2024-01-06.csv").write_bytes(b"")
    missing = data / "2024-01-07.csv"
    code, out, _ = run(
        capsys, "validate", str(data / "*.csv"), str(missing), "--schema", str(SIGNALS)
    )
    assert code == 1
    assert (
        f"{data / '2024-01-04.csv'}: invalid: 3 problems (signal, confidence, horizon_days)" in out
    )
    assert "    signal: in_range(-1.0, 1.0) failed on 1 row(s) (rows 1: 1.5)" in out
    assert f"{data / '2024-01-06.csv'}: unreadable: empty file: no header row" in out
    assert f"{missing}: unreadable: no such file" in out
    assert "6 file(s) against equity_signals: 3 valid, 1 invalid, 2 unreadable" in out


def test_validate_a_folder_checks_every_file_under_it(
    capsys: pytest.CaptureFixture[str], data: Path
) -> None:
    (data / "README.md").write_text("not data\n")
    folder = run(capsys, "validate", str(data), "--schema", str(SIGNALS))
    glob = run(capsys, "validate", str(data / "*.csv"), "--schema", str(SIGNALS))
    assert folder[:2] == glob[:2]
    assert folder[1].count(str(data)) >= 1
    # what a folder holds that cannot be sent is said, with why; the glob never saw it
    assert f"ignored: {data / 'README.md'}: unknown extension .md" in folder[2]
    assert "README" not in glob[2]

    (data / "empty").mkdir()
    code, out, err = run(capsys, "validate", str(data / "empty"), "--schema", str(SIGNALS))
    assert (code, out) == (2, "")
    assert err.startswith(f"error: no files matched: {data / 'empty'}: matched no files")


def test_validate_same_day_twice_across_files(
    capsys: pytest.CaptureFixture[str], data: Path
) -> None:
    signal_file(data / "2024-01-03-again.csv", "2024-01-03,AAPL,0.3,0.5,5")
    code, out, _ = run(capsys, "validate", str(data / "*.csv"), "--schema", str(SIGNALS))
    assert code == 1
    assert (
        f"2024-01-03.csv: invalid: 1 row(s) repeat a (date, ticker) key (rows 1); "
        f"already in {data / '2024-01-03-again.csv'}"
    ) in out


def test_validate_json_prints_only_json(capsys: pytest.CaptureFixture[str], data: Path) -> None:
    signal_file(data / "bad.csv", "2024-01-04,aapl,0.1,0.9,5")
    (data / "moved.csv").write_text(
        "ticker,date,signal,confidence,horizon_days\nAAPL,2024-01-09,0.1,0.9,5\n"
    )
    code, out, _ = run(capsys, "validate", str(data / "*.csv"), "--schema", str(SIGNALS), "--json")
    assert code == 1
    payload = json.loads(out)
    assert payload["summary"] == {"files": 4, "valid": 2, "invalid": 2, "unreadable": 0}
    by_name = {Path(f["path"]).name: f for f in payload["files"]}
    assert by_name["bad.csv"]["problems"][0]["column"] == "ticker"
    assert by_name["bad.csv"]["problems"][0]["rows"] == [1]
    assert payload["layouts"][0]["paths"] == [str(data / "moved.csv")]
    assert payload["layouts"][0]["matches_contract"] is False


def test_validate_no_files_matched_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(
        capsys, "validate", str(tmp_path / "nothing-*.csv"), "--schema", str(SIGNALS)
    )
    assert code == 2
    assert out == ""
    assert err.startswith("error: no files matched")


def test_validate_bad_contract_exit_2_names_the_file(
    capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("schema_type: polars_dataframe\ncolumns:\n  a:\n    dtype: Int65\n")
    code, _, err = run(capsys, "validate", str(data), "--schema", str(broken))
    assert code == 2
    assert err == f"error: {broken}: column 'a': unknown dtype 'Int65'\n"
    code, _, err = run(capsys, "validate", str(data), "--schema", str(tmp_path / "none.yaml"))
    assert code == 2
    assert "none.yaml: no such contract file" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------- schema


def test_schema_infer_writes_a_loadable_contract(
    capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path
) -> None:
    target = tmp_path / "schemas" / "signals.yaml"
    code, out, err = run(
        capsys, "schema", "infer", str(data / "*.csv"), "--name", "signals", "-o", str(target)
    )
    assert code == 0, err
    assert out == ""
    assert f"wrote {target}: 5 columns from 2 file(s)" in err
    contract = load_contract(target)
    assert contract.dataset_name == "signals"
    assert contract.names == ("date", "ticker", "signal", "confidence", "horizon_days")
    assert [c.nullable for c in contract.columns] == [False, False, False, True, False]


def test_schema_infer_prints_yaml_and_reports_drift(
    capsys: pytest.CaptureFixture[str], data: Path
) -> None:
    (data / "floats.csv").write_text(HEADER + "2024-01-04,AAPL,0.1,0.9,5.5\n")
    code, out, err = run(capsys, "schema", "infer", str(data / "*.csv"), "--name", "signals")
    assert code == 1
    assert out.startswith("# batchload contract")
    assert "schema_type: polars_dataframe" in out
    assert "drift: type: column 'horizon_days': Int64 in 2 file(s); Float64 in 1 file(s)" in err
    assert "the samples disagree in 1 way(s)" in err


def test_schema_show(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema", "show", str(SCHEMAS / "market_prices.yaml"))
    assert code == 0
    assert "dataset     market_prices" in out
    assert "volume    Int64    int64        no     greater_than_or_equal_to(0)" in out
    code, out, _ = run(capsys, "schema", "show", str(SIGNALS), "--json")
    assert json.loads(out)["unique"] == ["date", "ticker"]


def test_schema_diff_against_the_server(
    capsys: pytest.CaptureFixture[str], server: ServerProcess, token: str, tmp_path: Path
) -> None:
    contract = load_contract(SIGNALS)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    headers = {"Authorization": f"Bearer {token}"}
    same = requests.put(
        f"{server.url}/ingestion/datasets/signals-same",
        json={"name": "equity_signals", "schema": contract.locked_schema()},
        headers=headers,
        timeout=30,
    )
    assert same.status_code == 201, same.text
    other_schema = [
        {"name": "ticker", "type": "string"},
        {"name": "date", "type": "timestamp[ms]"},
        {"name": "signal", "type": "double"},
        {"name": "horizon_days", "type": "double"},
        {"name": "source", "type": "string"},
    ]
    other = requests.put(
        f"{server.url}/ingestion/datasets/signals-other",
        json={"name": "equity_signals_v0", "schema": other_schema},
        headers=headers,
        timeout=30,
    )
    assert other.status_code == 201, other.text
    common = ["--endpoint", server.url, "--token-file", str(token_file)]

    code, out, _ = run(
        capsys, "schema", "diff", str(SIGNALS), "--dataset-id", "signals-same", *common
    )
    assert code == 0
    assert out == f"{SIGNALS} matches dataset signals-same (equity_signals)\n"

    code, out, _ = run(
        capsys, "schema", "diff", str(SIGNALS), "--dataset-id", "signals-other", *common
    )
    assert code == 1
    assert "  missing   column 'source' is locked as string but not in the contract" in out
    assert "  extra     column 'confidence' (double) is in the contract, not the dataset" in out
    assert (
        "  type      column 'date' is date32[day] in the contract, locked as timestamp[ms]" in out
    )
    assert "  reordered column 'date' is at position 1 in the contract, 2 in the dataset" in out

    code, out, _ = run(
        capsys, "schema", "diff", str(SIGNALS), "--dataset-id", "signals-other", *common, "--json"
    )
    kinds = {(d["kind"], d["column"]) for d in json.loads(out)["differences"]}
    assert ("type", "horizon_days") in kinds and ("missing", "source") in kinds

    code, _, err = run(capsys, "schema", "diff", str(SIGNALS), "--dataset-id", "nope", *common)
    assert code == 2
    assert err == f"error: no dataset 'nope' at {server.url}\n"


def test_schema_diff_refused_token_exit_3(
    capsys: pytest.CaptureFixture[str], server: ServerProcess, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("wrong-token")
    code, _, err = run(
        capsys,
        "schema", "diff", str(SIGNALS), "--dataset-id", "x",
        "--endpoint", server.url, "--token-file", str(token_file),
    )  # fmt: skip
    assert code == 3
    assert err.startswith("error: ")
    assert "wrong-token" not in err


@pytest.mark.parametrize(
    "command",
    [("validate",), ("schema",), ("schema", "infer"), ("schema", "show"), ("schema", "diff")],
)
def test_help_has_purpose_and_example(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    assert "Example" in out
    assert "  batchload " in out


def test_copy_of_example_contract_validates_nothing_else(tmp_path: Path) -> None:
    """The example contracts are plain files: copying one elsewhere keeps it loadable."""
    copy = tmp_path / "mine.yaml"
    shutil.copy(SIGNALS, copy)
    assert load_contract(copy).fingerprint == load_contract(SIGNALS).fingerprint
