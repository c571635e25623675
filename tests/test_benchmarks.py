"""The benchmark harness runs end to end (``--quick``), so it cannot rot.

No timing is asserted: only that every scenario and contender reports sane numbers
and that the report files are written.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from benchmarks.contender import KINDS
from benchmarks.harness import SCENARIOS, SWEEP_KINDS, main
from benchmarks.report import findings


def _sane(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("results")
    work = tmp_path_factory.mktemp("work")
    keys = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    environment = {key: os.environ.get(key) for key in keys}
    main(["--quick", "--out", str(out), "--work", str(work)])
    # the bytecode cache is for the children only
    assert {key: os.environ.get(key) for key in keys} == environment
    return json.loads((out / "latest.json").read_text()), out


def test_every_scenario_and_contender_reports_sane_numbers(
    results: tuple[dict, Path],  # type: ignore[type-arg]
) -> None:
    data, _ = results
    assert data["quick"] is True
    assert set(data["scenarios"]) == set(SCENARIOS)
    for key in ("S", "M", "L", "L16"):
        contenders = data["scenarios"][key]["contenders"]
        assert set(contenders) == set(KINDS)
        for kind, result in contenders.items():
            if key == "L16" and kind in ("guide", "pool"):
                assert result["failed"], "the guide client cannot split a file over the cap"
                assert "payload_too_large" in result["error"] or "413" in result["error"]
                continue
            assert not result["failed"], (key, kind, result)
            for metric in ("files_per_s", "mb_per_s", "wall_s", "cpu_s", "peak_rss_mb"):
                assert _sane(result[metric]), (key, kind, metric, result[metric])
            assert result["files_per_s"] > 0
            if key != "L16":
                assert _sane(result["vs_guide"]) and _sane(result["vs_ceiling"])
        assert contenders["ceiling"]["vs_ceiling"] == 1.0
    sweep = data["scenarios"]["C"]["contenders"]
    assert set(sweep) == set(SWEEP_KINDS)
    for points in sweep.values():
        assert points and all(not p["failed"] and p["files_per_s"] > 0 for p in points)
    large, small = data["scenarios"]["V"]["large"], data["scenarios"]["V"]["small_files"]
    assert _sane(large["ratio"]) and _sane(small["grouped_ms_per_file"])
    resume = data["scenarios"]["R"]
    assert resume["skipped"] == resume["done"] and _sane(resume["skipped_per_s"])
    for target in data["targets"]:
        assert isinstance(target["met"], bool) and target["scenario"] in SCENARIOS


def test_the_report_and_the_plot_are_written(
    results: tuple[dict, Path],  # type: ignore[type-arg]
) -> None:
    data, out = results
    text = (out / "latest.md").read_text()
    assert "| S | **batchload** (validation on) |" in text
    assert "uv run python -m benchmarks --quick" in text
    for target in data["targets"]:
        assert target["target"] in text
    assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missed_throughput_target_is_set_against_the_cpu_both_processes_spent(
    results: tuple[dict, Path],  # type: ignore[type-arg]
) -> None:
    data, _ = results
    data = json.loads(json.dumps(data))
    for target in data["targets"]:
        target["met"] = target["met"] and target["scenario"] not in ("S", "L")
    bl = data["scenarios"]["L"]["contenders"]["batchload"]
    if bl["server_cpu_s"] is None:  # a quick round runs several contenders in one child
        bl["server_cpu_s"] = 0.5
    guide = data["scenarios"]["L"]["contenders"]["guide"]
    floor_s = (bl["cpu_s"] + bl["server_cpu_s"]) / data["machine"]["cores"]

    said = [f for f in findings(data) if f.startswith("L, validation on")]

    assert len(said) == 1
    assert f"less than {floor_s:.2f} s" in said[0]
    assert f"at most {guide['wall_s'] / floor_s:.2f}× the guide" in said[0]
