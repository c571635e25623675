"""RetryPolicy decisions, Retry-After parsing, full-jitter backoff and the AIMD pacer."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import anyio
import pytest

from batchload.errors import (
    AuthError,
    PayloadTooLarge,
    ServiceError,
    TransientError,
    UnreachableError,
)
from batchload.send.retry import AimdLimit, Pacer, RetryPolicy, parse_retry_after


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (TransientError("x", status=429), True),
        (TransientError("x", status=503), True),
        (TransientError("x", status=408), True),
        (TransientError("x", status=501), False),  # not in the policy's statuses
        (TransientError("dropped", status=None), True),
        (UnreachableError("refused"), True),
        (ServiceError("bad", status=400), False),
        (ServiceError("schema", status=422), False),
        (PayloadTooLarge("big", status=413), False),
        (AuthError("no", status=401), False),
        (ValueError("bug"), False),
    ],
)
def test_retry_is_decided_by_type_and_status(exc: BaseException, retried: bool) -> None:
    assert RetryPolicy().retryable(exc) is retried


def test_an_endpoint_that_never_answered_is_not_retried() -> None:
    """Refused or unknown before any answer: a wrong --endpoint, not a fault to wait out."""
    refused = UnreachableError("refused")
    assert not RetryPolicy().retryable(refused, answered=False)
    assert RetryPolicy().retryable(refused, answered=True)  # it answered, then went away
    assert RetryPolicy(retry_before_first_answer=True).retryable(refused, answered=False)
    # only "no answer at all" is judged by it: other transient faults are retried as ever
    assert RetryPolicy().retryable(TransientError("dropped"), answered=False)
    assert RetryPolicy().retryable(TransientError("x", status=503), answered=False)


def test_retry_statuses_are_data() -> None:
    policy = RetryPolicy(retry_statuses=frozenset({503}))
    assert policy.retryable(TransientError("x", status=503))
    assert not policy.retryable(TransientError("x", status=429))


def test_full_jitter_stays_under_the_capped_exponential() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0)
    rng = random.Random(7)
    for retry, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)]:
        draws = [policy.delay_s(retry, retry_after_s=None, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in draws)
        assert max(draws) > cap * 0.8  # jitter spans the range, not a fixed delay


def test_jitter_is_reproducible_with_a_seed() -> None:
    policy = RetryPolicy()
    a = [policy.delay_s(i, retry_after_s=None, rng=random.Random(3)) for i in range(1, 6)]
    b = [policy.delay_s(i, retry_after_s=None, rng=random.Random(3)) for i in range(1, 6)]
    assert a == b


def test_retry_after_wins_and_is_capped() -> None:
    policy = RetryPolicy(max_retry_after_s=60.0)
    rng = random.Random(0)
    assert policy.delay_s(1, retry_after_s=0.0, rng=rng) == 0.0
    assert policy.delay_s(1, retry_after_s=7.0, rng=rng) == 7.0
    assert policy.delay_s(1, retry_after_s=86400.0, rng=rng) == 60.0
    ignoring = RetryPolicy(honour_retry_after=False, base_delay_s=0.1, max_delay_s=0.1)
    assert ignoring.delay_s(1, retry_after_s=30.0, rng=rng) <= 0.1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("12", 12.0),
        (" 3 ", 3.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("", None),
        (None, None),
        ("-5", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


# (event sequence, limit after each event) with maximum 8, minimum 1.
AIMD_TABLE = [
    ("T", [4]),
    ("TT", [4, 2]),
    ("TTTT", [4, 2, 1, 1]),
    ("SSSS", [8, 8, 8, 8]),  # already at the maximum
    ("T" + "S" * 4, [4, 4, 4, 4, 5]),  # +1 after a window of `limit` successes
    ("T" + "S" * 9, [4, 4, 4, 4, 5, 5, 5, 5, 5, 6]),
    ("TSSST", [4, 4, 4, 4, 2]),  # a 429 resets the window
]


@pytest.mark.parametrize(("events", "limits"), AIMD_TABLE)
def test_aimd_limit_table(events: str, limits: list[int]) -> None:
    limit = AimdLimit(8)
    seen = []
    for event in events:
        limit.success() if event == "S" else limit.throttled()
        seen.append(limit.value)
    assert seen == limits


def test_pacer_caps_requests_in_flight_and_adapts() -> None:
    async def main() -> tuple[int, int, int]:
        clock = [0.0]
        pacer = Pacer(AimdLimit(4), clock=lambda: clock[0])
        in_flight = peak = 0
        release = anyio.Event()

        async def request() -> None:
            nonlocal in_flight, peak
            async with pacer.slot():
                in_flight += 1
                peak = max(peak, in_flight)
                await release.wait()
                in_flight -= 1

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(request)
            await anyio.wait_all_tasks_blocked()
            first_peak = peak
            pacer.on_throttle(0.0)  # a 429 with Retry-After: 0 halves the cap, no pause
            release.set()
        after_throttle = pacer.concurrency
        for _ in range(2):
            pacer.on_success()
        return first_peak, after_throttle, pacer.concurrency

    first_peak, after_throttle, raised = anyio.run(main)
    assert first_peak == 4
    assert after_throttle == 2
    assert raised == 3
