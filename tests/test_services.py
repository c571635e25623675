"""The real-service fixtures work, and can fail: PostgreSQL (locks, fresh databases) and
moto's S3 server driven through obstore (listing, ETags, conditional requests, versions).

The obstore tests double as a record of how obstore behaves against moto; batchload's
S3 source reader (issue 18) relies on the same calls and exceptions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

import obstore
import psycopg
import pytest
from obstore.exceptions import (
    AlreadyExistsError,
    GenericError,
    NotModifiedError,
    PreconditionError,
    UnknownConfigurationKeyError,
)
from obstore.store import S3Store
from psycopg import errors as pg_errors

from tests import services

# --------------------------------------------------------------------------- PostgreSQL

_seen_databases: list[str] = []


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_gets_a_fresh_empty_database(
    round_: int, postgres_url: str, postgres_server: services.PostgresServer
) -> None:
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None
        dbname = row[0]
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert tables == []
        assert postgres_url.endswith(f"/{dbname}")
        assert dbname.startswith("t_")
        conn.execute("CREATE TABLE leftover (id int)")  # must not be seen by the next round
    with postgres_server.connect() as admin:
        existing = {row[0] for row in admin.execute("SELECT datname FROM pg_database")}
    assert dbname in existing
    assert not existing & set(_seen_databases), "an earlier test's database was not dropped"
    _seen_databases.append(dbname)


def test_skip_locked_gives_two_workers_disjoint_rows(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE jobs (id int PRIMARY KEY, done boolean NOT NULL DEFAULT false)")
        setup.execute("INSERT INTO jobs (id) SELECT generate_series(1, 10)")
    claim = "SELECT id FROM jobs WHERE NOT done ORDER BY id LIMIT 4 FOR UPDATE SKIP LOCKED"
    with psycopg.connect(postgres_url) as a, psycopg.connect(postgres_url) as b:
        rows_a = [r[0] for r in a.execute(claim)]  # a's transaction stays open
        rows_b = [r[0] for r in b.execute(claim)]
        assert rows_a == [1, 2, 3, 4]
        assert rows_b == [5, 6, 7, 8]
        # The locks are real: without SKIP LOCKED, b cannot take a's rows.
        with pytest.raises(pg_errors.LockNotAvailable):
            b.execute("SELECT id FROM jobs WHERE id = 1 FOR UPDATE NOWAIT")
        b.rollback()
        a.execute("UPDATE jobs SET done = true WHERE id = ANY(%s)", (rows_a,))
        a.commit()
        rows_b = [r[0] for r in b.execute(claim)]
        assert rows_b == [5, 6, 7, 8]
        rows_a = [r[0] for r in a.execute(claim)]
        assert rows_a == [9, 10]


def test_server_runs_unprivileged_on_loopback(postgres_server: services.PostgresServer) -> None:
    with postgres_server.connect() as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('listen_addresses', 'fsync', 'unix_socket_directories')"
            ).fetchall()
        )
        assert conn.execute("SELECT current_user").fetchone()[0] == "postgres"
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "unix_socket_directories": str(postgres_server.socket_dir),
    }
    assert postgres_server.os_user != "root"


def test_missing_binaries_fail_with_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(services.ServiceError, match=r"apt-get install .*postgresql"):
        services.find_pg_bindir(tmp_path)


def test_newest_binaries_win_by_version_not_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for version in ("9.6", "15", "13", "16"):
        bindir = tmp_path / version / "bin"
        bindir.mkdir(parents=True)
        if version != "16":  # an incomplete install is passed over
            for name in services.PG_BINARIES:
                (bindir / name).touch()
    assert services.find_pg_bindir(tmp_path) == tmp_path / "15" / "bin"


# --------------------------------------------------------------------------- S3 / obstore


def _paths(metas: Iterable[obstore.ObjectMeta]) -> list[str]:
    return sorted(m["path"] for m in metas)


def test_s3_env_names_a_loopback_server(s3_server: services.S3Server) -> None:
    env = s3_server.env
    assert env["AWS_ENDPOINT_URL"] == s3_server.endpoint_url
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "test"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_ALLOW_HTTP"] == "true"


def test_list_by_prefix_streams_in_chunks(s3_server: services.S3Server, s3_bucket: str) -> None:
    store = s3_server.store(s3_bucket)
    assert obstore.list(store).collect() == []  # a fresh bucket is empty
    for path in ("in/a.csv", "in/b.csv", "out/c.csv"):
        obstore.put(store, path, path.encode())

    chunks = list(obstore.list(store, prefix="in", chunk_size=1))
    assert [len(chunk) for chunk in chunks] == [1, 1]
    assert _paths([m for chunk in chunks for m in chunk]) == ["in/a.csv", "in/b.csv"]
    # Prefixes match whole path segments: "i" is not a prefix of "in/a.csv".
    assert obstore.list(store, prefix="i").collect() == []
    assert _paths(obstore.list(store, prefix="in", offset="in/a.csv").collect()) == ["in/b.csv"]

    top = obstore.list_with_delimiter(store)
    assert sorted(top["common_prefixes"]) == ["in", "out"]
    assert top["objects"] == []


def test_get_if_match_succeeds_then_fails_after_overwrite(
    s3_server: services.S3Server, s3_bucket: str
) -> None:
    store = s3_server.store(s3_bucket)
    first = obstore.put(store, "data/x.csv", b"a,b\n1,2\n")
    assert first["e_tag"] and first["version"] is None  # unversioned bucket
    meta = obstore.head(store, "data/x.csv")
    assert meta["e_tag"] == first["e_tag"]
    assert meta["size"] == 8

    got = obstore.get(store, "data/x.csv", options={"if_match": first["e_tag"]})
    assert got.meta["e_tag"] == first["e_tag"]
    assert bytes(got.bytes()) == b"a,b\n1,2\n"

    second = obstore.put(store, "data/x.csv", b"a,b\n3,4\n")
    assert second["e_tag"] != first["e_tag"]
    with pytest.raises(PreconditionError):  # HTTP 412
        obstore.get(store, "data/x.csv", options={"if_match": first["e_tag"]})
    with pytest.raises(NotModifiedError):  # HTTP 304
        obstore.get(store, "data/x.csv", options={"if_none_match": second["e_tag"]})
    with pytest.raises(FileNotFoundError):  # 404 is the builtin, not obstore's NotFoundError
        obstore.get(store, "data/missing.csv")


def test_conditional_puts(s3_server: services.S3Server, s3_bucket: str) -> None:
    store = s3_server.store(s3_bucket)
    first = obstore.put(store, "k", b"1", mode="create")
    with pytest.raises(AlreadyExistsError):  # If-None-Match: *, HTTP 412
        obstore.put(store, "k", b"2", mode="create")
    second = obstore.put(store, "k", b"2", mode={"e_tag": first["e_tag"]})
    with pytest.raises(PreconditionError):  # If-Match with a stale ETag
        obstore.put(store, "k", b"3", mode={"e_tag": first["e_tag"]})
    assert obstore.head(store, "k")["e_tag"] == second["e_tag"]


def test_versioned_bucket_reports_versions(s3_server: services.S3Server) -> None:
    bucket = s3_server.create_bucket("t-versioned-" + uuid.uuid4().hex[:12], versioned=True)
    store = s3_server.store(bucket)
    v1 = obstore.put(store, "k", b"one")
    v2 = obstore.put(store, "k", b"two")
    assert v1["version"] and v2["version"] and v1["version"] != v2["version"]
    assert obstore.head(store, "k")["version"] == v2["version"]
    old = obstore.get(store, "k", options={"version": v1["version"]})
    assert bytes(old.bytes()) == b"one"


def test_store_from_env_and_url(
    s3_server: services.S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    obstore.put(s3_server.store(s3_bucket), "seen.txt", b"x")
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    # Endpoint, keys, region and allow_http all come from AWS_* variables.
    for store in (S3Store(s3_bucket), S3Store.from_url(f"s3://{s3_bucket}")):
        assert _paths(obstore.list(store).collect()) == ["seen.txt"]


def test_store_misconfiguration_fails(s3_server: services.S3Server, s3_bucket: str) -> None:
    plain_http = S3Store(
        s3_bucket,
        endpoint=s3_server.endpoint_url,
        access_key_id="test",
        secret_access_key="test",
        region="us-east-1",
    )
    with pytest.raises(GenericError, match="builder error"):  # http:// without allow_http
        obstore.put(plain_http, "k", b"1")
    with pytest.raises(UnknownConfigurationKeyError):
        s3_server.store(s3_bucket, no_such_option=True)
    with pytest.raises(FileNotFoundError, match="NoSuchBucket"):
        obstore.put(s3_server.store(s3_bucket + "-missing"), "k", b"1")
