"""A target as the report shows it: what was measured against its bound, met or missed."""

from __future__ import annotations

from typing import Any


def target(
    scenario: str,
    text: str,
    measured: float | None,
    bound: float,
    *,
    at_most: bool = False,
    note: str = "",
) -> dict[str, Any]:
    """Met when ``measured`` is at least ``bound`` (``at_most``: at most); never when
    nothing was measured."""
    met = measured is not None and (measured <= bound if at_most else measured >= bound)
    return {
        "scenario": scenario,
        "target": text,
        "measured": measured,
        "bound": bound,
        "met": met,
        "note": note,
    }
