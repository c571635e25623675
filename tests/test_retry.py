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


# Segments of answers -> the limit after each segment. An answer is its latency in ms
# ("20"), "u" when the limit was not reached when it was sent ("20u"), "S" a success
# without a latency, "T" a 429 or a 5xx; "'" marks an answer to a request sent before
# the limit last changed. Maximum 16, tolerance 2.
LIMIT_TABLE = [
    # slow start: the limit doubles after each window while latency holds; a window is
    # half the limit's answers (those to the places the last doubling opened), but at
    # least 4 or the limit: one slow answer must not cut a small limit
    (2, [("20", 2), ("20", 4), ("20", 4), ("20", 8)], [4, 8, 16, 16]),
    # a limit nothing reached does not grow
    (4, [("20u", 4), ("20", 4)], [4, 8]),
    # latency rose past 2 x the baseline: cut by baseline*2/latency (8*20.2*2/50 = 6.5),
    # slow start ends, then +1 a (whole) window while latency holds
    (4, [("20", 4), ("50", 4), ("30", 6), ("30", 7)], [8, 6, 7, 8]),
    # a cut is at most a halving
    (8, [("20", 4), ("200", 8)], [16, 8]),
    # 429/5xx halve; one from a request sent before the cut says nothing new
    (8, [("T", 1), ("T'", 1), ("20", 4), ("T", 1)], [4, 4, 5, 2]),
    # slow answers to requests sent under the old limit do not count against the new one
    (4, [("20", 4), ("90'", 8), ("20", 4)], [8, 8, 16]),
    # a limit of 2 is judged on both its answers: one slow one does not cut it
    (2, [("20", 1), ("90", 1)], [2, 4]),
    # without latencies it is plain AIMD; no start given: it starts at the maximum
    (None, [("S", 16), ("T", 1), ("S", 8), ("S", 9)], [16, 8, 9, 10]),
    # the link slows down for good: cut 4 -> 3 -> 2 -> 1 (windows of 4, 3, 2 answers, then
    # of 1), until the baseline (20 ms, +1 % a window) reaches 25 ms = 50 / 2 in the 24th
    # window: the limit grows again
    (2, [("20", 2), ("50", 28), ("50", 1)], [4, 1, 2]),
    # never under the minimum; a 429 ends slow start even there
    (1, [("T", 1), ("20", 1), ("20", 2)], [1, 2, 3]),
]


@pytest.mark.parametrize(("start", "segments", "limits"), LIMIT_TABLE)
def test_adaptive_limit_table(
    start: int | None, segments: list[tuple[str, int]], limits: list[int]
) -> None:
    limit = AimdLimit(16, start=start)
    seen = []
    for answer, count in segments:
        for _ in range(count):
            epoch = limit.epoch - 1 if answer.endswith("'") else limit.epoch
            kind = answer.rstrip("'")
            if kind == "T":
                limit.throttled(epoch=epoch)
            elif kind == "S":
                limit.success()
            else:
                latency_s = float(kind.rstrip("u")) / 1000
                limit.success(latency_s, reached=not kind.endswith("u"), epoch=epoch)
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
