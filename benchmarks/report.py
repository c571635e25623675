"""The harness's results as targets met or missed, a markdown report and the sweep plot.

Every figure comes from the results dict the harness measured; nothing here is
hard-coded but the targets themselves (from issue 5).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

from benchmarks import scaleout
from benchmarks.contender import KINDS
from benchmarks.data import ROOT
from benchmarks.install import DEV_ENVIRONMENT
from benchmarks.targets import target

LABELS = {
    "guide": "guide `upload_data_from_file`, sequential",
    "pool": "guide function, thread pool of 8",
    "batchload": "**batchload** (validation on)",
    "batchload-novalidate": "batchload `--no-validate`",
    "ceiling": "ceiling: pre-built requests, bare aiohttp",
}
SWEEP_LABELS = {
    "pool": "guide function, thread pool of N",
    "batchload": "batchload, --concurrency N (a cap)",
    "ceiling": "ceiling (bare aiohttp), N in flight",
}
RSS_ALLOWANCE_MB = 300.0


def _small_file_targets(found: dict[str, Any], environment: str) -> list[dict[str, Any]]:
    """S: files/s against the thread pool and the ceiling, CPU per file; S1: memory."""
    out: list[dict[str, Any]] = []
    if "S" in found:
        c = found["S"]["contenders"]
        bl, pool, ceiling = c["batchload"], c["pool"], c["ceiling"]
        out.append(
            target(
                "S",
                "batchload ≥ 1.5× the thread pool of 8 (files/s), validation on, defaults",
                bl.get("vs_pool"),
                1.5,
                note=f"the ceiling is {_ratio(ceiling.get('vs_pool'))} the thread pool",
            )
        )
        out.append(
            target(
                "S",
                f"batchload ≥ 0.9× the ceiling at concurrency {found['S']['concurrency']} "
                "(files/s), validation on, defaults",
                bl.get("vs_ceiling"),
                0.9,
                note=f"`--no-validate` {_ratio(c['batchload-novalidate'].get('vs_ceiling'))}; "
                f"batchload's requests in flight went up to {bl.get('concurrency_peak') or '–'}",
            )
        )
        per_file = _per(bl, pool, "cpu_ms_per_file")
        out.append(
            target(
                "S",
                "batchload's client CPU per file ≤ 0.8× the thread pool's, validation on",
                per_file,
                0.8,
                at_most=True,
                note=f"{_num(bl.get('cpu_ms_per_file'), '{:.2f}')} ms against "
                f"{_num(pool.get('cpu_ms_per_file'), '{:.2f}')} ms; the ceiling's "
                f"{_num(ceiling.get('cpu_ms_per_file'), '{:.2f}')} ms "
                f"({_ratio(_per(bl, ceiling, 'cpu_ms_per_file'))} it)",
            )
        )
    if "S1" in found:
        one = found["S1"]["contenders"]["batchload"]
        pool_mib = _mib(found["S1"]["contenders"]["pool"].get("peak_rss_mb"))
        contender = (
            f"the library's call in a benchmark process {_num(_mib(one.get('peak_rss_mb')))} "
            f"MiB ({_num(_mib(one.get('rss_before_mb')), '{:.0f}')} after imports); the "
            f"thread pool's peak {_num(pool_mib, '{:.0f}')} MiB; in a {environment}"
        )
        cli = found.get("U", {}).get("upload_one_file_peak_mib")
        out.append(
            target(
                "S1",
                "batchload's peak RSS for one small file ≤ 150 MiB",
                _mib(one.get("peak_rss_mb")) if cli is None else cli,
                150,
                at_most=True,
                note=contender
                if cli is None
                else f"the whole `batchload upload` process (scenario U); {contender}",
            )
        )
        if "S" in found:
            many = found["S"]["contenders"]["batchload"]
            top, floor = _mib(many.get("peak_rss_mb")), _mib(one.get("peak_rss_mb"))
            growth = None if top is None or floor is None else round(top - floor, 1)
            out.append(
                target(
                    "S1",
                    f"batchload's peak RSS grows ≤ 30 MiB from 1 to {found['S']['files']:,} "
                    "small files",
                    growth,
                    30,
                    at_most=True,
                )
            )
    return out


def _per(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    if a.get("failed") or b.get("failed") or not a.get(key) or not b.get(key):
        return None
    return round(a[key] / b[key], 2)


def _mib(mb: float | None) -> float | None:
    """MB (10^6 bytes, as the contenders report) in MiB."""
    return None if mb is None else round(mb * 1e6 / 2**20, 1)


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets (issues 5 and 16), each with what was measured, whether it is met, and
    context."""
    found = results["scenarios"]
    out = []
    environment = batchload_environment(results)
    out += _small_file_targets(found, environment)
    if "M" in found:
        c = found["M"]["contenders"]
        out.append(
            target(
                "M",
                "batchload ≥ 1.5× the thread pool of 8 (MB/s), validation on, defaults",
                c["batchload"].get("vs_pool"),
                1.5,
                note=f"`--no-validate` {_ratio(c['batchload-novalidate'].get('vs_pool'))}",
            )
        )
        out.append(
            target(
                "M",
                "batchload ≥ 0.8× the ceiling (MB/s), validation on, defaults",
                c["batchload"].get("vs_ceiling"),
                0.8,
                note=f"`--no-validate` {_ratio(c['batchload-novalidate'].get('vs_ceiling'))}",
            )
        )
    if "W" in found:
        w = found["W"]
        c = w["contenders"]
        subset = (
            f"; the guide client sent {w['guide_files']:,} of the {w['files']:,} files "
            "(one after another: its files/s is a steady rate)"
            if w.get("guide_files", w["files"]) < w["files"]
            else ""
        )
        out.append(
            target(
                "W",
                "batchload ≥ 40× the guide client (files/s), validation on, defaults",
                c["batchload"].get("vs_guide"),
                40,
                note=f"the ceiling is {_ratio(c['ceiling'].get('vs_guide'))} the guide client"
                + subset,
            )
        )
    if "U" in found:
        u = found["U"]
        out.append(
            target(
                "U",
                "`batchload upload` of one small file ≤ 1 CPU s, whole process",
                u["upload_one_file_cpu_s"],
                1.0,
                at_most=True,
                note=f"bounds the CPU before the first request; in a {environment}",
            )
        )
        out.append(
            target("U", "`batchload --help` ≤ 0.3 CPU s", u["help_cpu_s"], 0.3, at_most=True)
        )
        out.append(
            target(
                "U",
                "a usage error (`batchload upload` of a missing file) ≤ 0.3 CPU s",
                u["usage_error_cpu_s"],
                0.3,
                at_most=True,
                note="answered before the pipeline's libraries load",
            )
        )
    if "L" in found:
        c = found["L"]["contenders"]
        out.append(
            target(
                "L",
                "batchload ≥ 2× the guide client's MB/s, validation on",
                c["batchload"].get("vs_guide"),
                2,
                note=f"the ceiling is {_ratio(c['ceiling'].get('vs_guide'))} the guide client; "
                f"`--no-validate` {_ratio(c['batchload-novalidate'].get('vs_guide'))}",
            )
        )
    for key in ("L", "L16"):
        if key in found:
            scenario = found[key]
            c = scenario["contenders"]
            bound = 2 * scenario["largest_file_mb"] + RSS_ALLOWANCE_MB
            before = c["batchload"].get("rss_before_mb")
            out.append(
                target(
                    key,
                    f"batchload peak RSS ≤ 2× the largest file + {RSS_ALLOWANCE_MB:g} MB "
                    f"(= {bound:,.0f} MB), validation on",
                    c["batchload"].get("peak_rss_mb"),
                    bound,
                    at_most=True,
                    note=f"{_num(before, '{:,.0f}')} MB before the run (interpreter and "
                    "imports); `--no-validate` "
                    f"{_num(c['batchload-novalidate'].get('peak_rss_mb'), '{:,.0f}')} MB",
                )
            )
    if "V" in found:
        large, small = found["V"]["large"], found["V"]["small_files"]
        out.append(
            target(
                "V",
                f"pandera ≤ 1.3× hand-written Polars ({large['rows']:,} rows × {large['columns']})",
                large["ratio"],
                1.3,
                at_most=True,
                note=f"{large['pandera_s']:.3f} s against {large['polars_s']:.3f} s",
            )
        )
        out.append(
            target(
                "V",
                f"≤ 2 ms per small file, grouped, read included ({small['files']:,} files)",
                small["grouped_ms_per_file"],
                2.0,
                at_most=True,
                note=f"one pandera call each: {small['one_call_each_ms_per_file']:.1f} ms/file",
            )
        )
    if "R" in found:
        r = found["R"]
        out.append(
            target(
                "R",
                "≥ 20,000 files/s skipped on resume",
                r["skipped_per_s"],
                20_000,
                note=f"{r['done']:,} of {r['files']:,} done, in {r['seconds'] * 1000:.0f} ms",
            )
        )
    if "P" in found:
        out += scaleout.targets(found["P"])
    return out


# --- markdown ---------------------------------------------------------------------------------


def _num(value: float | None, fmt: str = "{:,.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def _failure(error: str) -> str:
    if "payload_too_large" in error or " 413" in error:
        return "**fails**: 413, the body is over the cap and it cannot split"
    return "**fails**: " + error.replace("|", "/")[:80]


def _upload_rows(key: str, scenario: dict[str, Any]) -> list[str]:
    rows = []
    for kind in KINDS:
        result = scenario["contenders"][kind]
        if result["failed"]:
            failure = _failure(result["error"])
            rows.append(f"| {key} | {LABELS[kind]} | {failure} | | | | | | | | | | |")
            continue
        in_flight = result.get("concurrency_peak")
        if in_flight is None:
            in_flight = {"guide": 1, "pool": scenario["threads"]}.get(kind, scenario["concurrency"])
        else:
            in_flight = f"{scenario.get('start', '?')}→{in_flight}"
        rows.append(
            f"| {key} | {LABELS[kind]} | {_num(result['files_per_s'])} "
            f"| {_num(result['mb_per_s'])} | {_ratio(result['vs_guide'])} "
            f"| {_ratio(result.get('vs_pool'))} "
            f"| {_ratio(result['vs_ceiling'])} | {in_flight} "
            f"| {_num(result['peak_rss_mb'], '{:,.0f}')} "
            f"| {_num(result['cpu_s'], '{:.2f}')} "
            f"| {_num(result.get('cpu_ms_per_file'), '{:.2f}')} "
            f"| {_num(result.get('server_cpu_s'), '{:.2f}')} | {result['runs']} |"
        )
    return rows


def findings(results: dict[str, Any]) -> list[str]:
    """What the targets table means, as sentences drawn from this run's numbers only."""
    found, out = results["scenarios"], []
    w = found.get("W", {}).get("contenders")
    if w and not w["ceiling"]["failed"] and (w["ceiling"]["vs_guide"] or 0) < 40:
        ceiling = w["ceiling"]
        busy = ""
        if ceiling.get("server_cpu_s") is not None:
            server_cores = ceiling["server_cpu_s"] / ceiling["wall_s"]
            busy = (
                f" (in the ceiling's run the server used {ceiling['server_cpu_s']:.2f} CPU s "
                f"in {ceiling['wall_s']:.2f} s, {server_cores:.1f} cores, and the client "
                f"{ceiling['cpu_s']:.2f}: the server is one Python process, whose event loop "
                "and workers take turns on one interpreter lock)"
            )
        out.append(
            f"W's 40× is out of reach here: the local server holds "
            f"even the ceiling to {_ratio(ceiling['vs_guide'])} the guide client{busy}."
        )
    offline = []
    for t in results["targets"]:
        c = found.get(t["scenario"], {}).get("contenders")
        against = _against(t["target"])
        if c is None or against is None or t["met"] or "CPU" in t["target"]:
            continue
        ratio = c["batchload-novalidate"].get(f"vs_{against}")
        if ratio is not None and ratio >= t["bound"]:
            offline.append(
                f"{t['scenario']} ({_ratio(ratio)} the {NAMES[against]} with `--no-validate`)"
            )
    if offline:
        out.append(
            "The throughput targets batchload misses with validation on, it meets without: "
            + ", ".join(offline)
            + ". The difference is the contract check's CPU, which here competes with the "
            "local server's parsing for the same two cores."
        )
    out += _cpu_bounds(results)
    out += _drift(found)
    large = found.get("L", {}).get("contenders")
    memory_missed = any(
        t["scenario"] in ("L", "L16") and "RSS" in t["target"] and not t["met"]
        for t in results["targets"]
    )
    if large and memory_missed and not large["batchload-novalidate"]["failed"]:
        out.append(
            "A large CSV is checked in 8 MiB blocks, and its unique keys' hashes wait in a "
            "temporary file, so neither the file nor its keys stay in memory. What is left is "
            "a check's working set (pyarrow's read-ahead, a block's Arrow and polars copies), "
            "the uploads in flight beside it, and the pages each allocator keeps; sent "
            "unvalidated, the same files peak at "
            f"{large['batchload-novalidate']['peak_rss_mb']:,.0f} MB."
        )
    l16 = found.get("L16", {}).get("contenders")
    if l16 and l16["guide"]["failed"] and not l16["batchload"]["failed"]:
        out.append(
            "Against the 16 MiB cap the guide's functions fail on every file (413); batchload "
            "cuts each into parquet parts and every file lands."
        )
    return out


NAMES = {"guide": "guide", "pool": "thread pool", "ceiling": "ceiling"}


def _against(target: str) -> str | None:
    """Which contender a throughput target compares batchload with (None: not one)."""
    if "CPU" in target or "RSS" in target:
        return None
    for kind in ("ceiling", "pool", "guide"):
        if NAMES[kind] in target:
            return kind
    return None


def _drift(found: dict[str, Any]) -> list[str]:
    """How far the machine's speed moved during the uploads (the harness's speed probe),
    and S's ratio to the thread pool round by round beside it."""
    uploads = [found[k] for k in ("S", "S1", "W", "M", "L", "L16") if k in found]
    probes = sorted(
        run["probe_ms"]
        for scenario in uploads
        for runs in scenario.get("runs", {}).values()
        for run in runs
        if run.get("probe_ms")
    )
    if len(probes) < 2 or probes[0] <= 0:
        return []
    line = (
        "The machine's speed moved during the run: a fixed Python loop, timed before each "
        f"contender's run, took {probes[0]:g}-{probes[-1]:g} ms (median "
        f"{probes[len(probes) // 2]:g}), so some runs had {probes[-1] / probes[0]:.2f}× the "
        "CPU time of others for the same work."
    )
    s = found.get("S", {}).get("runs", {})
    pairs = [
        (mine["files_ok"] / mine["wall_s"] / (pool["files_ok"] / pool["wall_s"]), mine["probe_ms"])
        for mine, pool in zip(s.get("batchload", []), s.get("pool", []), strict=False)
        if mine.get("wall_s") and pool.get("wall_s") and mine.get("probe_ms")
    ]
    if len(pairs) > 1:
        rounds = ", ".join(f"{ratio:.2f}× ({probe:g} ms)" for ratio, probe in pairs)
        line += (
            " S, batchload's files/s over the thread pool's round by round (the probe before "
            f"batchload's run): {rounds}; a CPU-bound contender moves with the machine, a "
            "latency-bound one (the guide, the pool at 8) much less."
        )
    return [line]


def _cpu_bounds(results: dict[str, Any]) -> list[str]:
    """For each scenario with a throughput target missed: the best ratio that the CPU
    batchload and the local server spent allows, since both share the machine's cores.
    A target above that bound needs less CPU per file, not a better schedule."""
    cores = results.get("machine", {}).get("cores") or 1
    missed: dict[str, list[dict[str, Any]]] = {}
    for t in results["targets"]:
        if not t["met"] and t["scenario"] in ("S", "W", "M", "L") and _against(t["target"]):
            missed.setdefault(t["scenario"], []).append(t)
    out = []
    for key, missed_here in missed.items():
        c = results["scenarios"][key]["contenders"]
        bl = c["batchload"]
        if bl["failed"] or bl.get("server_cpu_s") is None:
            continue
        floor_s = (bl["cpu_s"] + bl["server_cpu_s"]) / cores
        bounds = []
        for t in missed_here:
            against = _against(t["target"])
            assert against is not None
            other = c[against]
            if not other["failed"]:
                # the other's time for as many files as batchload sent (the guide may
                # have sent a subset)
                wall_s = other["wall_s"] * bl["files"] / other["files"]
                bounds.append(
                    f"{_ratio(wall_s / floor_s)} the {NAMES[against]} "
                    f"(target {t['bound']:g}×, measured {_ratio(t['measured'])})"
                )
        if bounds:
            out.append(
                f"{key}, validation on: batchload's client used {bl['cpu_s']:.2f} CPU s and "
                f"the local server {bl['server_cpu_s']:.2f}. On {cores} cores no schedule "
                f"does that in less than {floor_s:.2f} s, so at these costs batchload can "
                f"reach at most {' and '.join(bounds)}."
            )
    return out


def _targets_table(checks: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | measured | met | for context |", "|---|--:|:-:|---|"]
    for t in checks:
        measured = t["measured"]
        shown = "–" if measured is None else f"{measured:,.2f}".rstrip("0").rstrip(".")
        met = "yes" if t["met"] else "**no**"
        lines.append(f"| {t['scenario']}: {t['target']} | {shown} | {met} | {t['note']} |")
    return [*lines, ""]


def markdown(results: dict[str, Any], plot_name: str = "latest.png") -> str:
    """The report: machine, targets, uploads table, validation, resume, sweep."""
    found = results["scenarios"]
    m = results["machine"]
    lines = [
        f"Command: `{results['command']}`" + (" (quick: tiny sizes)" if results["quick"] else ""),
        "",
        f"Machine: {m.get('cores')} cores ({m.get('cpu', '?')}), {m.get('memory_gib', '?')} GiB, "
        f"Python {m.get('python')}, polars {m['versions']['polars']}, pandera "
        f"{m['versions']['pandera']}, aiohttp {m['versions']['aiohttp']}; git {m.get('git', '?')}; "
        f"load average {results['load_average_at_start'][0]} at start, "
        f"{results['load_average_at_end'][0]} at end (shared machine); "
        f"{results['seconds'] / 60:.1f} min in all. batchload and the ceiling ran in a "
        f"{batchload_environment(results)}; the guide's contenders, which need `requests`, "
        "in the benchmarks' own environment.",
        "",
    ]
    made = provenance(results)
    checks = results.get("targets", [])
    if checks:
        met = sum(t["met"] for t in checks)
        lines += [f"**{met} of {len(checks)} targets met.**", "", *_targets_table(checks), made]
        lines += ["", *(f"- {finding}" for finding in findings(results))]
        lines.append("")
    uploads = [k for k in ("S", "S1", "W", "M", "L", "L16") if k in found]
    if uploads:
        lines += [
            "| scenario | contender | files/s | MB/s | × guide | × pool of 8 | × ceiling "
            "| in flight | peak RSS MB | CPU s | CPU ms/file | server CPU s | runs |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for key in uploads:
            lines += _upload_rows(key, found[key])
        lines += [made, "", "Scenarios (each contender against its own fresh local server):", ""]
        for key in uploads:
            s = found[key]
            subset = s.get("guide_files", s["files"])
            lines.append(
                f"- **{key}**: {s['title']}; {s['source_mb']:,.1f} MB of CSV; server "
                f"`{s['server']}`; batchload at its defaults, the ceiling at concurrency "
                f"{s['concurrency']}, the pool with {s['threads']} threads; "
                f"`--max-request-mb {s['max_request_mb']:g}`."
                + (
                    f" The sequential guide client sent the first {subset:,} files only: "
                    "its files/s is that steady rate, and its × figures are taken from it."
                    if subset < s["files"]
                    else ""
                )
            )
        lines += [
            "",
            "files/s and MB/s are of source files and bytes that landed, medians of the runs; "
            "*in flight* is the requests in flight (batchload: from its start to the highest "
            "its adaptive limit went); CPU s is the client's user+system time for the run, "
            "server CPU s the local server's over the client's whole process (both share "
            "the machine's cores); peak RSS is the client process's high-water mark, "
            "imports included (the ceiling's includes its pre-built bodies).",
            "",
        ]
    if "V" in found:
        large, small = found["V"]["large"], found["V"]["small_files"]
        lines += [
            f"**V** (validation alone): {large['rows']:,} rows × {large['columns']} columns: "
            f"batchload/pandera {large['pandera_s']:.3f} s, hand-written Polars "
            f"{large['polars_s']:.3f} s, **{large['ratio']:.2f}×**. "
            f"{small['files']:,} files × {small['rows_per_file']} rows, read included: grouped "
            f"{small['grouped_s']:.3f} s = **{small['grouped_ms_per_file']:.2f} ms/file**; one "
            f"call each {small['one_call_each_ms_per_file']:.1f} ms/file.",
            "",
        ]
    if "R" in found:
        r = found["R"]
        lines += [
            f"**R** (resume): {r['files']:,} files, {r['done']:,} done in the manifest: "
            f"skipped in {r['seconds'] * 1000:.0f} ms (discovery, manifest read and decisions; "
            f"median of {r['runs']}) = **{r['skipped_per_s']:,} files/s**; "
            f"{r['to_send']:,} left to send.",
            "",
        ]
    if "U" in found:
        u = found["U"]
        lines += [
            f"**U** (start-up, CPU of the whole process, median of {u['runs']}): "
            f"`batchload --help` {u['help_cpu_s']:.2f} s; a usage error "
            f"{u['usage_error_cpu_s']:.2f} s; `batchload upload` of one small file, "
            f"validated and sent, {u['upload_one_file_cpu_s']:.2f} s"
            + (
                f", peak RSS {u['upload_one_file_peak_mib']:.1f} MiB"
                if "upload_one_file_peak_mib" in u
                else ""
            )
            + f"; in a {batchload_environment(results)}.",
            "",
        ]
    if "C" in found:
        c = found["C"]
        conc = [p["concurrency"] for p in next(iter(c["contenders"].values()))]
        lines += [
            f"**C** (concurrency sweep, {c['files']} files of ~20 KB, server `{c['server']}`): "
            f"files/s; plot: [{plot_name}]({plot_name})",
            "",
            "| contender | " + " | ".join(f"N={n}" for n in conc) + " |",
            "|---|" + "--:|" * len(conc),
        ]
        for kind, points in c["contenders"].items():
            cells = ["failed" if p["failed"] else _num(p["files_per_s"], "{:,.0f}") for p in points]
            lines.append(f"| {SWEEP_LABELS[kind]} | " + " | ".join(cells) + " |")
        lines += [made, ""]
    if "P" in found:
        lines += scaleout.markdown(found["P"], made)
    return "\n".join(lines)


def batchload_environment(results: dict[str, Any]) -> str:
    """Where batchload ran (:mod:`benchmarks.install`); runs before it was said: the dev one."""
    return str(results["machine"].get("batchload_environment", DEV_ENVIRONMENT))


def provenance(results: dict[str, Any]) -> str:
    """The line under each table: which commit, on what machine, by which command."""
    m = results["machine"]
    quick = " (quick: tiny sizes)" if results["quick"] else ""
    return (
        f"<sub>git {m.get('git', '?')}, {m.get('cores')} cores ({m.get('cpu', '?')}), "
        f"load {results['load_average_at_start'][0]}; `{results['command']}`{quick}</sub>"
    )


# --- the plot --------------------------------------------------------------------------------


BARS = ("guide", "pool", "batchload", "ceiling")
BAR_LABELS = {
    "guide": "guide function, sequential",
    "pool": "guide function, thread pool of 8",
    "batchload": "batchload, defaults, validation on",
    "ceiling": "ceiling (bare aiohttp, pre-built requests)",
}


def plot(results: dict[str, Any], path: Path) -> bool:
    """Each upload scenario's contenders side by side (× the guide client), and the
    concurrency sweep beside them, as a PNG (matplotlib, Agg); False when neither ran."""
    found = results["scenarios"]
    scenarios = [
        k
        for k in ("S", "W", "M", "L")
        if k in found and not found[k]["contenders"]["guide"]["failed"]
    ]
    sweep = found.get("C")
    if not scenarios and sweep is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = int(bool(scenarios)) + int(sweep is not None)
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 5), dpi=110, squeeze=False)
    row = list(axes[0])
    if scenarios:
        ax = row.pop(0)
        width = 0.8 / len(BARS)
        for n, kind in enumerate(BARS):
            xs = [i + (n - (len(BARS) - 1) / 2) * width for i in range(len(scenarios))]
            ys = [found[k]["contenders"][kind].get("vs_guide") or 0 for k in scenarios]
            bars = ax.bar(xs, ys, width, label=BAR_LABELS[kind])
            ax.bar_label(bars, labels=[f"{y:.1f}" for y in ys], fontsize=7)
        ax.set_xticks(range(len(scenarios)), [_short_title(k, found[k]) for k in scenarios])
        ax.set_yscale("log")
        ax.set_ylabel("× the guide client (files/s)")
        ax.set_title("side by side, one run")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if sweep is not None:
        ax = row.pop(0)
        for kind, points in sweep["contenders"].items():
            good = [p for p in points if not p["failed"]]
            ax.plot(
                [p["concurrency"] for p in good],
                [p["files_per_s"] for p in good],
                marker="o",
                label=SWEEP_LABELS[kind],
            )
        s = found.get("S")
        if s and not s["contenders"]["guide"]["failed"]:
            ax.axhline(
                s["contenders"]["guide"]["files_per_s"],
                color="grey",
                linestyle="--",
                label="guide function, sequential (scenario S)",
            )
        if s and not s["contenders"]["batchload"]["failed"]:
            ax.axhline(
                s["contenders"]["batchload"]["files_per_s"],
                color="black",
                linestyle=":",
                label="batchload at its defaults (scenario S)",
            )
        ax.set_xscale("log", base=2)
        ticks = [p["concurrency"] for p in next(iter(sweep["contenders"].values()))]
        ax.set_xticks(ticks, [str(n) for n in ticks])
        ax.set_xlabel("requests in flight (threads for the pool)")
        ax.set_ylabel("files/s")
        ax.set_title(f"{sweep['files']} CSV files of ~20 KB, server {sweep['server']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(provenance(results).removeprefix("<sub>").removesuffix("</sub>"), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _short_title(key: str, scenario: dict[str, Any]) -> str:
    server = scenario["server"].replace("--latency-ms ", "").replace("(defaults)", "")
    latency = f"\n{server} ms" if server and server.isdigit() else ""
    return f"{key}: {scenario['files']:,} × {scenario['largest_file_mb']:g} MB{latency}"


PAGE_START = "<!-- performance:start -->"
PAGE_END = "<!-- performance:end -->"
RESULTS = "benchmarks/results"
PERFORMANCE_PAGE = ROOT / "docs" / "performance.md"


def page_region(results: dict[str, Any], page: Path = PERFORMANCE_PAGE) -> str:
    """The performance page's generated region, from a full run's results.

    Links to the results are relative to ``page``'s folder, so they resolve where the
    page lives (``../benchmarks/results/...`` from ``docs/``).
    """
    m = results["machine"]
    here = Path(os.path.relpath(ROOT / RESULTS, page.resolve().parent)).as_posix()
    paragraphs = [
        "Five ways to send the same files, side by side in one run, each contender in its "
        "own process against its own fresh local server on loopback (`batchload serve`, "
        "the same knobs for all): the guide's `upload_data_from_file` one file after "
        "another; the same function in a thread pool of 8, as SigTech's SDK does; batchload "
        "with its contract checked; batchload with `--no-validate`; and a *ceiling*: "
        "batchload's very requests, built in memory before the clock starts and sent by a "
        "bare aiohttp loop at the same concurrency (no reading, validating, hashing, "
        "retries or manifest).",
        f"Made by `{results['command']}` ({results['seconds'] / 60:.0f} min) on "
        f"{m.get('cores')} cores ({m.get('cpu', '?')}) and {m.get('memory_gib', '?')} GiB "
        "(`nproc`, `free -h`), shared with other work while it ran (load average "
        f"{results['load_average_at_start'][0]} at the start): trust the ratios, measured "
        "side by side, more than the absolute figures. The local server does the API's "
        "real work (decode, parse, fsync, commit) on the same two cores as the client, so "
        "the ceiling is this machine's, not SigTech's. Full results: "
        f"[{RESULTS}/latest.md]({here}/latest.md) and "
        f"[latest.json]({here}/latest.json); `--quick` runs everything at tiny sizes "
        "in under a minute, `--only S,R` a subset.",
        f"![batchload, thread pool, guide and ceiling side by side]({here}/latest.png)",
    ]
    intro = []
    for paragraph in paragraphs:
        intro += [*textwrap.wrap(paragraph, 88, break_on_hyphens=False), ""]
    body = markdown(results, f"{here}/latest.png").split("\n")
    body = [line for line in body if not line.startswith(("Command:", "Machine:"))]
    while body and not body[0]:
        body.pop(0)
    return "\n".join(intro + body).rstrip() + "\n"


def update_page(results: dict[str, Any], page: Path = PERFORMANCE_PAGE) -> None:
    """Replace what lies between the performance markers of ``page``."""
    text = page.read_text()
    pattern = re.compile(re.escape(PAGE_START) + ".*?" + re.escape(PAGE_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{page} has no {PAGE_START} ... {PAGE_END} region")
    region = f"{PAGE_START}\n{page_region(results, page)}{PAGE_END}"
    page.write_text(pattern.sub(lambda _: region, text, count=1))


def write_reports(results: dict[str, Any], out: Path) -> str:
    """Write latest.json, latest.md and latest.png into ``out``; return the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    results["targets"] = targets(results)
    has_plot = plot(results, out / "latest.png")
    text = markdown(results, "latest.png" if has_plot else "")
    (out / "latest.json").write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    (out / "latest.md").write_text(text)
    return text


def main() -> None:
    """``python -m benchmarks.report``: rewrite latest.md (and docs/performance.md) from JSON."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--results", type=Path, default=ROOT / RESULTS / "latest.json")
    parser.add_argument(
        "--page",
        type=Path,
        nargs="?",
        const=PERFORMANCE_PAGE,
        help="update this page's performance region (alone: docs/performance.md)",
    )
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    print(write_reports(results, args.results.parent))
    if args.page:
        update_page(results, args.page)


if __name__ == "__main__":
    main()
