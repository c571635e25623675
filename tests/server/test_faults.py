"""Each fault knob does what it says, counted over many requests with a fixed seed."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
import requests

from batchload.server.faults import Faults, FaultSettings
from batchload.server.process import ServerProcess
from tests.server.helpers import DATASETS, Api, assert_error, file_body

TOKEN = "faults-token"
CSV = b"a,b\n1,x\n"
SCHEMA = [{"name": "a", "type": "int64"}, {"name": "b", "type": "string"}]

Factory = Callable[..., ServerProcess]


def _start(server_factory: Factory, *knobs: str, name: str = "server") -> Api:
    return Api(server_factory(*knobs, tokens=(TOKEN,), name=name).url, TOKEN)


def test_fail_rate_counts_repeat_with_the_seed(server_factory: Factory) -> None:
    counts = []
    for name in ("first", "second"):
        api = _start(server_factory, "--fail-rate", "0.2", "--seed", "7", name=name)
        responses = [api.get(DATASETS) for _ in range(200)]
        statuses = Counter(r.status_code for r in responses)
        assert set(statuses) == {200, 503}
        assert 20 <= statuses[503] <= 60  # 40 expected; a band, not a coin flip
        assert_error(next(r for r in responses if r.status_code == 503), 503, "unavailable")
        counts.append(statuses[503])
    assert counts[0] == counts[1]


def test_fail_rate_answers_503_before_storing(server_factory: Factory) -> None:
    api = _start(server_factory, "--fail-rate", "0.5", "--seed", "1")
    dataset = api.put(f"{DATASETS}/d", json={"name": "d", "schema": SCHEMA})
    while dataset.status_code == 503:
        dataset = api.put(f"{DATASETS}/d", json={"name": "d", "schema": SCHEMA})
    answered = {}
    for i in range(40):
        response = api.add("d", CSV, file_id=f"f{i:02d}")
        answered[f"f{i:02d}"] = response.status_code
        if response.status_code == 503:
            assert_error(response, 503, "unavailable")
    assert set(answered.values()) == {201, 503}
    listing = api.get(f"{DATASETS}/d/files")
    while listing.status_code == 503:
        listing = api.get(f"{DATASETS}/d/files")
    assert listing.json()["ids"] == sorted(k for k, v in answered.items() if v == 201)


def test_faults_spare_healthz_and_admin(server_factory: Factory) -> None:
    api = _start(server_factory, "--fail-rate", "1")
    for _ in range(20):
        assert api.get("/healthz").status_code == 200
        assert_error(api.get(DATASETS), 503, "unavailable")
    assert api.post("/admin/revoke").status_code == 200


def _answered(api: Api, method: str, path: str, **kwargs: object) -> requests.Response:
    """Ask again while the connection is dropped (--drop-rate): for the test's own calls."""
    for _ in range(50):
        try:
            return api.request(method, path, **kwargs)
        except requests.ConnectionError:
            continue
    raise AssertionError("every answer was dropped")


def test_drop_rate_stores_then_closes_without_answering(server_factory: Factory) -> None:
    runs = []
    for name in ("first", "second"):
        api = _start(server_factory, "--drop-rate", "0.3", "--seed", "3", name=name)
        _answered(api, "PUT", f"{DATASETS}/d", json={"name": "d", "schema": SCHEMA})
        dropped = []
        for i in range(60):
            try:
                response = api.add("d", CSV, file_id=f"f{i:02d}")
            except requests.ConnectionError:
                dropped.append(i)
                continue
            assert response.status_code == 201
        assert 6 <= len(dropped) <= 35  # 18 expected
        # Dropped uploads were stored all the same: the failure is ambiguous.
        listing = _answered(api, "GET", f"{DATASETS}/d/files")
        assert listing.json()["ids"] == [f"f{i:02d}" for i in range(60)]
        runs.append(dropped)
    assert runs[0] == runs[1]


def test_drop_rate_drops_answers_to_reads_too(server_factory: Factory) -> None:
    api = _start(server_factory, "--drop-rate", "0.3", "--seed", "5")
    dropped = 0
    for _ in range(40):
        try:
            assert api.get(DATASETS).status_code == 200
        except requests.ConnectionError:
            dropped += 1
    assert 4 <= dropped <= 24  # 12 expected


def test_drop_rate_never_drops_a_refusal(server_factory: Factory) -> None:
    server = server_factory("--drop-rate", "1", tokens=(TOKEN,))
    api = Api(server.url, TOKEN)
    with pytest.raises(requests.ConnectionError):  # created, answer dropped
        api.put(f"{DATASETS}/d", json={"name": "d", "schema": SCHEMA})
    for _ in range(5):
        assert_error(api.add("d", b"a\n1\n", file_id="f"), 422, "schema_mismatch")
        assert_error(api.post(DATASETS, json=file_body(CSV)), 400, "bad_request")
        assert_error(api.get(f"{DATASETS}/nope/files"), 404, "not_found")
    with pytest.raises(requests.ConnectionError):
        api.add("d", CSV, file_id="stored")
    server.stop()
    plain = Api(server_factory(tokens=(TOKEN,)).url, TOKEN)  # same data, no faults
    assert plain.file_ids("d") == ["stored"]


def test_create_delay_holds_a_create_before_storing_it(server_factory: Factory) -> None:
    api = _start(server_factory, "--create-delay-ms", "1500")
    with pytest.raises(requests.Timeout):  # the client gives up before the create is stored
        api.session.put(
            api.url + f"{DATASETS}/d", json={"name": "d", "schema": SCHEMA}, timeout=0.2
        )
    assert api.get(DATASETS).json() == []  # a look-up by name finds nothing yet
    deadline = time.monotonic() + 30
    while not api.get(DATASETS).json():  # then it lands
        assert time.monotonic() < deadline, "the delayed create never landed"
        time.sleep(0.05)  # polling the server's state, not waiting for it blindly
    assert [d["id"] for d in api.get(DATASETS).json()] == ["d"]


def test_no_dataset_put_refuses_the_put_create(server_factory: Factory) -> None:
    api = _start(server_factory, "--no-dataset-put")
    assert_error(
        api.put(f"{DATASETS}/d", json={"name": "d", "schema": SCHEMA}), 405, "method_not_allowed"
    )
    assert api.create(CSV)["name"] == "test-dataset"  # the guide's create still works


def test_rate_limit_answers_429_with_retry_after(server_factory: Factory) -> None:
    api = _start(server_factory, "--rate-limit", "2")
    responses = [api.get(DATASETS) for _ in range(30)]
    # The bucket starts full (one second's worth), so the first two always pass.
    assert [r.status_code for r in responses[:2]] == [200, 200]
    limited = [r for r in responses if r.status_code == 429]
    assert limited, "30 requests in a row never went over 2 per second"
    for response in limited:
        error = assert_error(response, 429, "rate_limited")
        assert int(response.headers["Retry-After"]) >= 1
        assert error["details"]["retry_after_s"] == int(response.headers["Retry-After"])
    assert api.get("/healthz").status_code == 200


def test_latency_outlasts_a_client_timeout_shorter_than_it(server_factory: Factory) -> None:
    api = _start(server_factory, "--latency-ms", "5000")
    assert api.get("/healthz").status_code == 200  # health checks are never delayed
    # The injected delay comes before any answer, so a client that waits less gets none.
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.session.get(api.url + DATASETS, timeout=0.5)


# --- the knobs' state, with a fake clock ------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("rate", "steps", "expected"),
    [
        # (seconds to advance before each request) -> None (allowed) or Retry-After
        (1.0, [0, 0, 0.5, 0.5], [None, 1, 1, None]),
        (2.0, [0, 0, 0, 0.25, 0.25], [None, None, 1, 1, None]),
        (0.5, [0, 0, 1.0, 1.0], [None, 2, 1, None]),
        (0.0, [0] * 5, [None] * 5),
    ],
)
def test_token_bucket(rate: float, steps: list[float], expected: list[int | None]) -> None:
    clock = FakeClock()
    faults = Faults(FaultSettings(rate_limit=rate), clock=clock)
    verdicts = []
    for step in steps:
        clock.now += step
        verdicts.append(faults.retry_after_s())
    assert verdicts == expected


def test_seeded_draws_repeat_and_rates_are_respected() -> None:
    def draws(seed: int) -> tuple[list[bool], list[bool]]:
        faults = Faults(FaultSettings(fail_rate=0.25, drop_rate=0.5, seed=seed))
        return [faults.should_fail() for _ in range(400)], [
            faults.should_drop() for _ in range(400)
        ]

    first, again, other = draws(11), draws(11), draws(12)
    assert first == again and first != other
    assert 60 <= sum(first[0]) <= 140 and 150 <= sum(first[1]) <= 250
    off = Faults(FaultSettings())
    assert not any(off.should_fail() or off.should_drop() for _ in range(100))


@pytest.mark.parametrize(
    "bad", [{"fail_rate": 1.5}, {"drop_rate": -0.1}, {"latency_ms": -1}, {"rate_limit": -2}]
)
def test_fault_settings_are_checked(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FaultSettings(**bad)
