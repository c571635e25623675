"""``batchload demo`` end to end, and the sample files it is made of."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from batchload.check.validate import validate_files
from batchload.contract.model import load_contract
from batchload.demo.backfill import find_contract, make_backfill
from batchload.demo.samples import (
    DEMO_FORMATS,
    tickers,
    trading_days,
    write_signal_files,
    write_xlsx,
)
from batchload.errors import ConfigError, UsageError
from batchload.state.manifest import Manifest

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "schemas" / "equity_signals.yaml"
DAYS, TICKERS = 20, 12


def batchload(*args: str, cwd: Path = ROOT, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SIGTECH_PLATFORM_TOKEN", "COLUMNS")}
    return subprocess.run(
        [sys.executable, "-m", "batchload", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=240,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


# --- the demo, as a user runs it ------------------------------------------------------------


def test_demo_uploads_the_good_files_refuses_the_bad_and_sends_nothing_twice(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "demo"
    ran = batchload(
        "demo", "--dir", str(directory), "--days", str(DAYS), "--tickers", str(TICKERS), "--json"
    )
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    report = json.loads(ran.stdout)

    files = report["files"]
    assert files["total"] == DAYS
    assert files == {"total": DAYS, "csv": 16, "parquet": 3, "xlsx": 1}
    deliberate = {Path(d["path"]).name: d["kind"] for d in report["deliberate"]}
    assert sorted(deliberate.values()) == ["duplicate_day", "missing_column", "wrong_type"]

    first = report["first_run"]
    refused = {
        Path(p["path"]).name: " ".join([p["reason"], *p["details"]]) for p in first["problems"]
    }
    assert set(refused) == set(deliberate)  # the xlsx file lands, as parquet
    assert first["uploaded"] == DAYS - len(refused)
    assert first["invalid"] == len(refused) and first["failed"] == 0
    assert first["bytes_sent"] > 0 and first["seconds"] > 0
    reasons = {kind: refused[name] for name, kind in deliberate.items()}
    assert "confidence" in reasons["wrong_type"] and "'high'" not in reasons["missing_column"]
    assert "high" in reasons["wrong_type"]
    assert "column 'confidence' is missing" in reasons["missing_column"]
    assert "(date, ticker)" in reasons["duplicate_day"]
    assert first["reconcile"][0]["on_server"] == first["uploaded"]
    assert first["reconcile"][0]["missing"] == []
    assert Path(first["manifest"]) == directory / "manifest.sqlite"
    assert Path(first["manifest"]).is_file()
    with Manifest.open(Path(first["manifest"]), create=False) as manifest:
        (workbook,) = [r for r in manifest.rows() if r.source_path.endswith(".xlsx")]
    assert (workbook.state, workbook.file_format, workbook.converted_from) == (
        "done",
        "parquet",
        "xlsx",
    )
    assert workbook.rows == TICKERS and workbook.sent_sha256 != workbook.sha256

    second = report["second_run"]
    assert second["uploaded"] == 0 and second["bytes_sent"] == 0
    assert second["skipped"] == first["uploaded"]
    assert second["invalid"] == first["invalid"]

    commands = "\n".join(report["next_commands"])
    assert "export SIGTECH_PLATFORM_TOKEN=" in commands
    assert "--endpoint https://api.sigtech.com" in commands
    assert "batchload upload" in commands and "schemas/equity_signals.yaml" in commands


def test_demo_narrates_on_stdout_and_keeps_the_token_to_itself(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    ran = batchload("demo", "--dir", str(directory), "--days", "10", "--tickers", str(TICKERS))
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    out = ran.stdout
    for step in (
        "1. Writing 10 trading days",
        "2. Started a local ingestion server",
        "3. Uploading with the contract schemas/equity_signals.yaml",
        "4. The same command again",
        "5. The same upload against SigTech's API",
    ):
        assert step in out
    assert "sent      " in out and "refused   " in out and "manifest  " in out
    assert "excel     1 workbook(s) read with the contract's types" in out
    assert "sent 0 files; skipped " in out
    token = (directory / "token").read_text().strip()
    assert token and token not in out + ran.stderr
    assert (directory / "token").stat().st_mode & 0o077 == 0
    log = (directory / "server.serve.log").read_text()
    assert token not in log


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    ran = batchload("demo", "--dir", str(tmp_path))
    assert ran.returncode == 2
    assert ran.stderr.startswith(f"error: --dir {tmp_path} is not an empty folder")
    assert len(ran.stderr.splitlines()) == 1


def test_demo_stops_its_server_on_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIGTECH_PLATFORM_TOKEN"}
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchload",
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--days",
            "60",
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        url = None
        for line in demo.stdout:
            if line.startswith("2. Started a local ingestion server at "):
                url = line.split(" at ")[1].split()[0]
                break
        assert url is not None, "the demo never started its server"
        demo.send_signal(signal.SIGINT)  # the demo only: the server must be stopped by it
        _, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130
    assert err.split()[-1] in ("aborted", "interrupted")  # click reports Ctrl-C as an abort
    assert "Traceback" not in err
    parts = urlsplit(url)
    with pytest.raises(OSError), socket.create_connection((parts.hostname, parts.port), timeout=5):
        pass


# --- the pieces --------------------------------------------------------------------------------


def test_signal_files_are_deterministic_and_pass_the_contract(tmp_path: Path) -> None:
    a = write_signal_files(tmp_path / "a", 9, 15, formats=("csv", "parquet"), seed=3)
    b = write_signal_files(tmp_path / "b", 9, 15, formats=("csv", "parquet"), seed=3)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert [p.suffix for p in a[:3]] == [".csv", ".parquet", ".csv"]
    assert [p.stem for p in a[:2]] == ["signals_2023-01-02", "signals_2023-01-03"]
    verdicts = validate_files(a, load_contract(CONTRACT))
    assert all(v.valid for v in verdicts), [v.reason for v in verdicts if not v.valid]
    assert {v.rows for v in verdicts} == {15}


def test_trading_days_skip_weekends_and_tickers_extend_past_the_list() -> None:
    days = trading_days(dt.date(2024, 1, 5), 3)  # a Friday
    assert days == [dt.date(2024, 1, 5), dt.date(2024, 1, 8), dt.date(2024, 1, 9)]
    names = tickers(70)
    assert len(set(names)) == 70 and names[0] == "AAPL" and names[-1].startswith("SYN")


def test_xlsx_writer_makes_a_workbook_the_reader_types_as_excel_does(tmp_path: Path) -> None:
    import fastexcel

    path = tmp_path / "t.xlsx"
    write_xlsx(
        path,
        [
            ["date", "ticker", "n"],
            [dt.date(2024, 2, 29), "A&B <x>", 5],
            [dt.date(2024, 3, 1), None, 2.5],
        ],
    )
    frame = fastexcel.read_excel(path).load_sheet(0).to_polars()
    assert frame.columns == ["date", "ticker", "n"]
    assert frame["date"].dt.date().to_list() == [dt.date(2024, 2, 29), dt.date(2024, 3, 1)]
    assert frame["ticker"].to_list() == ["A&B <x>", None]
    assert frame["n"].to_list() == [5.0, 2.5]


def test_backfill_spoils_three_csv_files_in_three_ways(tmp_path: Path) -> None:
    backfill = make_backfill(tmp_path, days=12, tickers=TICKERS)
    assert len(backfill.files) == 12
    assert backfill.by_format == {"csv": 9, "parquet": 2, "xlsx": 1}
    assert DEMO_FORMATS[6] == "xlsx"
    verdicts = {
        v.path.name: v for v in validate_files(list(backfill.files), load_contract(CONTRACT))
    }
    bad = {b.path.name: b.kind for b in backfill.bad}
    assert all(name.endswith(".csv") for name in bad)
    invalid = {name for name, v in verdicts.items() if not v.valid}
    assert invalid == set(bad)  # the xlsx file's date cells and whole numbers fit the contract
    assert verdicts["signals_2023-01-10.xlsx"].rows == TICKERS


def test_demo_needs_at_least_a_few_days(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--days must be at least"):
        make_backfill(tmp_path, days=3, tickers=TICKERS)


def test_a_missing_demo_contract_says_where_to_run_from(tmp_path: Path) -> None:
    assert find_contract(cwd=tmp_path) == CONTRACT  # found in batchload's own checkout
    with pytest.raises(
        ConfigError, match=r"cannot find the demo's contract schemas/nope\.yaml"
    ) as info:
        find_contract("nope", cwd=tmp_path)
    assert "repository" in str(info.value)
