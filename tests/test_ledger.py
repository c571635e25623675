"""The ledger's claims, guards, locks and budget, the same on both stores: a SQLite file and a
real PostgreSQL database (the session's server, a fresh database per test)."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from batchload.errors import LedgerError, UsageError
from batchload.state.ledger import Ledger, Progress, WorkerRow, redact
from batchload.state.records import Changes, FileKeys, FileRecord
from batchload.state.stores import open_ledger

LEASE_S = 30.0


@pytest.fixture
def location(manifest_location: str) -> str:
    return manifest_location


@pytest.fixture
def ledger(location: str) -> Iterator[Ledger]:
    with open_ledger(location) as opened:
        yield opened


def row(path: str, state: str = "done", *, part: int = 0, parts: int | None = 1) -> FileRecord:
    return FileRecord(
        dataset="d",
        source_path=path,
        part=part,
        parts=parts,
        file_id=f"{path.strip('/')}-{part}",
        size=10,
        mtime_ns=1,
        state=state,  # type: ignore[arg-type]
    )


def test_two_owners_never_hold_one_file(location: str) -> None:
    with open_ledger(location) as a, open_ledger(location) as b:
        since = a.register("a")
        b.register("b")
        paths = [f"/f{i}" for i in range(10)]
        a.enqueue("d", paths, since=since)
        b.enqueue("d", paths, since=since)  # the same queue, once
        first = a.claim("d", "a", limit=4, lease_s=LEASE_S)
        second = b.claim("d", "b", limit=100, lease_s=LEASE_S)
        assert first == tuple(paths[:4])
        assert second == tuple(paths[4:])
        assert b.claim("d", "b", limit=100, lease_s=LEASE_S) == ()
        pending = b.pending("d", "b")
        assert pending.unfinished == 4
        assert pending.next_expiry_s is not None and pending.next_expiry_s > b.clock()


def test_a_write_of_a_file_taken_over_is_refused(location: str) -> None:
    with open_ledger(location) as a, open_ledger(location) as b:
        since = a.register("a")
        b.register("b")
        a.enqueue("d", ["/x", "/y"], since=since)
        assert a.claim("d", "a", limit=2, lease_s=-1.0) == ("/x", "/y")  # expired already
        assert b.claim("d", "b", limit=1, lease_s=LEASE_S) == ("/x",)
        refused = a.apply([Changes(records=(row("/x"), row("/y")))], owner="a")
        assert refused == {("d", "/x")}
        assert {r.source_path: r.owner for r in a.rows()} == {"/y": "a"}
        assert b.apply([Changes(records=(row("/x"),))], owner="b") == frozenset()
        assert {r.source_path: r.owner for r in a.rows()} == {"/x": "b", "/y": "a"}
        # settled: nobody claims them again, and a second write is refused too
        assert b.claim("d", "b", limit=10, lease_s=LEASE_S) == ()
        assert b.apply([Changes(records=(row("/x", "failed"),))], owner="b") == {("d", "/x")}
        progress = a.progress()
        assert (progress.done, progress.in_flight, progress.left) == (2, 0, 0)


def test_a_part_does_not_settle_its_file(ledger: Ledger) -> None:
    since = ledger.register("a")
    ledger.enqueue("d", ["/big"], since=since)
    assert ledger.claim("d", "a", limit=1, lease_s=LEASE_S) == ("/big",)
    first = row("/big", part=1, parts=None)
    assert ledger.apply([Changes(records=(first,))], owner="a") == frozenset()
    assert ledger.pending("d", "other").unfinished == 1
    both = (row("/big", part=1, parts=2), row("/big", part=2, parts=2))
    assert ledger.apply([Changes(records=both)], owner="a") == frozenset()
    assert ledger.pending("d", "other").unfinished == 0


def test_finished_in_this_run_stays_finished_earlier_is_queued_again(ledger: Ledger) -> None:
    since = ledger.register("a")
    ledger.enqueue("d", ["/x"], since=since)
    ledger.claim("d", "a", limit=1, lease_s=LEASE_S)
    ledger.apply([Changes(records=(row("/x", "failed"),))], owner="a")
    ledger.enqueue("d", ["/x"], since=since)  # a process that started with this one
    assert ledger.claim("d", "b", limit=1, lease_s=LEASE_S) == ()
    later = ledger.register("later")
    ledger.enqueue("d", ["/x"], since=later)  # a new run, which saw it failed
    assert ledger.claim("d", "later", limit=1, lease_s=LEASE_S) == ("/x",)


def test_the_heartbeat_keeps_claims_and_unregister_gives_them_back(ledger: Ledger) -> None:
    since = ledger.register("a")
    ledger.enqueue("d", ["/x", "/y"], since=since)
    ledger.claim("d", "a", limit=2, lease_s=-1.0)
    assert ledger.renew("a", LEASE_S) == 2
    assert ledger.claim("d", "b", limit=2, lease_s=LEASE_S) == ()
    assert ledger.unregister("a", silent_s=LEASE_S) == ()
    assert ledger.claim("d", "b", limit=2, lease_s=LEASE_S) == ("/x", "/y")


def test_processes_leave_one_at_a_time_and_the_last_finds_no_other_at_work(
    location: str,
) -> None:
    with open_ledger(location) as a, open_ledger(location) as b:
        since = a.register("a")
        b.register("b")
        a.enqueue("d", ["/x", "/y", "/z"], since=since)
        assert a.claim("d", "a", limit=2, lease_s=LEASE_S) == ("/x", "/y")
        assert b.claim("d", "b", limit=2, lease_s=LEASE_S) == ("/z",)
        a.apply([Changes(records=(row("/x"), row("/y", "invalid")))], owner="a")
        b.apply([Changes(records=(row("/z"),))], owner="b")
        assert a.unregister("a", silent_s=LEASE_S) == ("b",)  # the run goes on in b
        assert b.unregister("b", silent_s=LEASE_S) == ()  # b finished it last
        run = b.progress().shared_run(since, silent_s=LEASE_S)
        assert (run.last, run.done, run.failed, run.in_flight, run.left) == (True, 2, 1, 0, 0)
        assert [(p.owner, p.done, p.failed, p.state) for p in run.processes] == [
            ("a", 1, 1, "finished"),
            ("b", 1, 0, "finished"),
        ]


def worker(owner: str, started: float, seen: float, finished: float | None) -> WorkerRow:
    return WorkerRow(
        owner=owner,
        started_at=started,
        seen_at=seen,
        finished_at=finished,
        done=1,
        failed=0,
        in_flight=2 if finished is None else 0,
    )


def test_what_an_ended_process_of_this_host_held_is_free_at_once(location: str) -> None:
    """A process that was killed is let go of when another registers, not after its
    lease; a live one, or one of another host, keeps its claims and lock."""
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    ended, alive = subprocess.Popen(sleep), subprocess.Popen(sleep)
    host = socket.gethostname()
    owners = {
        "ended": f"{host}:{ended.pid}:aaaaaa",
        "alive": f"{host}:{alive.pid}:bbbbbb",
        "elsewhere": f"{host}-other:{ended.pid}:cccccc",
    }
    try:
        with open_ledger(location) as ledger:
            for owner in owners.values():
                since = ledger.register(owner)
            ledger.enqueue("d", [f"/f{i}" for i in range(6)], since=since)
            for owner in owners.values():
                assert len(ledger.claim("d", owner, limit=2, lease_s=LEASE_S)) == 2
            assert ledger.lock("create:d", owners["ended"], lease_s=LEASE_S)
            ended.kill()
            ended.wait()  # its pid is gone (waited for: not even a zombie)

            me = f"{host}:{os.getpid()}:dddddd"
            ledger.register(me)
            assert ledger.claim("d", me, limit=10, lease_s=LEASE_S) == ("/f0", "/f1")
            assert ledger.lock("create:d", me, lease_s=LEASE_S)
            states = {w.owner: w.gone_at is not None for w in ledger.progress().workers}
            assert states == {**{o: n == "ended" for n, o in owners.items()}, me: False}
            assert ledger.unregister(me, silent_s=LEASE_S) == (owners["alive"], owners["elsewhere"])
            assert ledger.release_gone() == ()  # once is enough
    finally:
        for child in (ended, alive):
            child.kill()
            child.wait()


def test_a_run_is_the_processes_that_overlap_back_to_its_first() -> None:
    progress = Progress(
        now=100.0,
        done=0,
        failed=0,
        in_flight=0,
        left=3,
        workers=(
            worker("yesterday", 1.0, 9.0, 10.0),
            worker("killed-yesterday", 2.0, 8.0, None),
            worker("early", 30.0, 55.0, 55.0),  # overlapped "me": the same run
            worker("killed-early", 40.0, 45.0, None),  # overlapped "early"
            worker("me", 50.0, 99.0, 99.5),
            worker("other", 60.0, 98.0, None),  # heard from within the lease
        ),
    )
    run = progress.shared_run(50.0, silent_s=10.0, running=("other",))
    assert [(p.owner, p.state) for p in run.processes] == [
        ("early", "finished"),
        ("killed-early", "gone"),
        ("me", "finished"),
        ("other", "running"),
    ]
    assert (run.last, run.done, run.in_flight) == (False, 4, 4)
    assert run.left == 3 + 2  # what a gone process of an earlier run holds is anyone's


def test_a_lock_has_one_owner_until_it_expires(ledger: Ledger) -> None:
    assert ledger.lock("create:d", "a", lease_s=LEASE_S)
    assert not ledger.lock("create:d", "b", lease_s=LEASE_S)
    assert ledger.lock("create:d", "a", lease_s=-1.0)  # the owner again; now expired
    assert ledger.lock("create:d", "b", lease_s=LEASE_S)
    ledger.unlock("create:d", "b")
    assert ledger.lock("create:d", "a", lease_s=LEASE_S)


def test_grants_are_spaced_and_a_throttle_slows_them(ledger: Ledger) -> None:
    waits = [ledger.grant("rps", 0.1) for _ in range(5)]
    # each grant is 0.1 s after the one before, whenever it was asked for
    assert waits[0] == 0.0
    for before, after in itertools.pairwise(waits):
        assert after - before == pytest.approx(0.1, abs=0.02)
    ledger.throttle("rps", 2.0, max_interval_s=10.0)
    assert ledger.grant("rps", 0.1) > 1.5  # everyone waits out the pause


def test_every_transaction_counts_in_the_ledgers_own_time(ledger: Ledger) -> None:
    """What a run reports as its ledger time: each call's transaction, on either store."""
    before = (ledger.spent.calls, ledger.spent.seconds)
    since = ledger.register("a")
    ledger.enqueue("d", ["/x", "/y"], since=since)
    ledger.claim("d", "a", limit=2, lease_s=LEASE_S)
    ledger.apply([Changes(records=(row("/x"),))], owner="a")
    ledger.grant("rps", 0.1)
    assert ledger.spent.calls == before[0] + 5
    assert ledger.spent.seconds > before[1]


def test_key_hashes_are_counted_without_being_read_then_read_a_few_files_at_a_time(
    ledger: Ledger,
) -> None:
    """What a run's cross-file check reads of the history, the same on both stores:
    how many hashes each file has, then the hashes of the files it asks for."""
    odd = "/d/caf\udce9.csv"  # a name that is not UTF-8 (kept as bytes:<hex>)
    blobs = {"/d/a.csv": bytes(range(256)) * 4_000, "/d/b.csv": b"B" * 8, odd: b"C" * 16}
    ledger.write(
        [row(path) for path in blobs],
        keys=[
            FileKeys(dataset="d", source_path=path, scheme="s1", hashes=blob)
            for path, blob in blobs.items()
        ]
        + [FileKeys(dataset="e", source_path="/d/a.csv", scheme="s1", hashes=b"E" * 8)],
    )
    ledger.write(
        [], keys=[FileKeys(dataset="d", source_path="/d/z.csv", scheme="s0", hashes=b"Z" * 8)]
    )
    assert ledger.key_counts("d", "s1") == {"/d/a.csv": 128_000, "/d/b.csv": 1, odd: 2}
    assert ledger.key_counts("d", "s0") == {"/d/z.csv": 1}  # made another way: apart
    assert sorted(ledger.key_hashes("d", "s1", ["/d/a.csv", odd])) == [
        ("/d/a.csv", blobs["/d/a.csv"]),
        (odd, blobs[odd]),
    ]
    assert ledger.key_hashes("d", "s1", ["/d/z.csv", "/d/gone.csv"]) == []


def test_a_newer_postgres_ledger_is_refused_and_a_password_never_shown(postgres_url: str) -> None:
    with open_ledger(postgres_url):
        pass
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE batchload_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(UsageError, match=r"newer batchload \(schema v99"):
        open_ledger(postgres_url)
    secret = postgres_url.replace("postgres@", "postgres:hunter2@").replace(
        "127.0.0.1:", "127.0.0.1:1"
    )
    with pytest.raises(LedgerError) as caught:
        open_ledger(secret.rsplit(":", 1)[0] + ":1/x")
    assert "hunter2" not in str(caught.value)
    assert ":***@" in str(caught.value)
    assert redact("postgresql://u:p%40ss@h:5/db and postgres://v:w@h/db") == (
        "postgresql://u:***@h:5/db and postgres://v:***@h/db"
    )


def test_reading_a_ledger_that_is_not_there(postgres_url: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no batchload ledger at"):
        open_ledger(postgres_url, create=False)
    with pytest.raises(UsageError, match="no manifest at"):
        open_ledger(tmp_path / "none.sqlite", create=False)
