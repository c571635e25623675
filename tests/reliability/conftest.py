"""Reliability suite fixtures; at the end of a session the figures it gathered are
written to ``.batchload/reliability-last-run.json`` (what docs/reliability.md quotes)."""

from __future__ import annotations

import json

import pytest

from tests.reliability.helpers import LEDGER
from tests.upload_helpers import ROOT

FIGURES = ROOT / ".batchload" / "reliability-last-run.json"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    summary = LEDGER.summary()
    if not (LEDGER.fault_cases or LEDGER.hostile_files or LEDGER.hostile_http):
        return
    summary["pytest_exit_status"] = int(exitstatus)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(summary, indent=2) + "\n")
