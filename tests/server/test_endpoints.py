"""Each SDK call of the contract, with its status and the JSON shape of its answer."""

from __future__ import annotations

import base64
import hashlib
import re

from tests.server.helpers import DATASETS, Api

CSV = b"date,ticker,price\n2024-01-02,AAA,1.5\n2024-01-03,BBB,2.25\n"
RECEIPT_FIELDS = {"id", "file_id", "rows", "bytes", "sha256", "file_format", "received_at"}
DATASET_FIELDS = {"id", "name", "schema"}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def sdk_schema() -> list[dict[str, str]]:
    return [{"name": n, "type": "string"} for n in ("date", "ticker", "price")]


def sdk_part(file_id: str, data: bytes = CSV) -> dict[str, object]:
    """A file body exactly as the SDK's ``upload_part`` builds it."""
    return {
        "file_id": file_id,
        "file": base64.b64encode(data).decode(),
        "file_format": "csv",
        "upload_format": "base64",
        "tags": {"name": file_id},
        "read_options": {"encoding": "utf8"},
        "convert_options": {"column_types": {c["name"]: c["type"] for c in sdk_schema()}},
    }


def test_create_with_explicit_schema_then_get(api: Api) -> None:
    body = {"name": "sdk-set", "schema": sdk_schema(), "identifier": "sdk-set", "tags": {"a": 1}}
    created = api.put(f"{DATASETS}/sdk-set", json=body)
    assert created.status_code == 201
    answer = created.json()
    assert set(answer) >= DATASET_FIELDS
    assert (answer["id"], answer["name"], answer["schema"]) == ("sdk-set", "sdk-set", sdk_schema())
    assert answer["identifier"] == "sdk-set" and answer["tags"] == {"a": 1}

    got = api.get(f"{DATASETS}/sdk-set")
    assert got.status_code == 200
    assert got.json() == {**answer, "file_count": 0, "rows": 0, "bytes": 0}

    again = api.put(f"{DATASETS}/sdk-set", json=body)
    assert again.status_code == 200  # the same create again changes nothing
    assert again.json()["schema"] == sdk_schema()


def test_explicit_schema_types_are_normalised_and_checked(api: Api) -> None:
    schema = [{"name": "a", "type": "utf8"}, {"name": "b", "type": "float64"}]
    answer = api.put(f"{DATASETS}/normalised", json={"name": "n", "schema": schema}).json()
    assert answer["schema"] == [{"name": "a", "type": "string"}, {"name": "b", "type": "double"}]


def test_sdk_upload_parts_new_then_overwritten(api: Api) -> None:
    api.put(f"{DATASETS}/parts", json={"name": "parts", "schema": sdk_schema()})
    first = api.post(f"{DATASETS}/parts/files", json=sdk_part("part-1"))
    assert first.status_code == 201
    receipt = first.json()
    assert set(receipt) >= RECEIPT_FIELDS
    assert receipt["id"] == "parts" and receipt["file_id"] == "part-1"
    assert receipt["rows"] == 2 and receipt["bytes"] == len(CSV)
    assert receipt["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert receipt["file_format"] == "csv" and ISO_UTC.fullmatch(receipt["received_at"])
    assert receipt["raw_file_key"] == "parts/part-1"  # what the SDK reads back
    assert receipt["overwritten"] is False

    changed = CSV + b"2024-01-04,CCC,3\n"
    second = api.post(f"{DATASETS}/parts/files", json=sdk_part("part-1", changed))
    assert second.status_code == 200
    assert second.json()["overwritten"] is True
    assert second.json()["rows"] == 3
    assert second.json()["sha256"] == hashlib.sha256(changed).hexdigest()
    assert api.file_ids("parts") == ["part-1"]


def test_guide_put_also_answers_201_then_200(api: Api) -> None:
    dataset_id = api.create(CSV, file_id="a")["id"]
    assert api.add(dataset_id, CSV, file_id="b").status_code == 201
    assert api.add(dataset_id, CSV, file_id="b").status_code == 200
    assert api.add(dataset_id, CSV, file_id="c", method="POST").status_code == 201


def test_create_from_first_file_answers_id_and_locked_schema(api: Api) -> None:
    answer = api.create(CSV, name="first-file", file_id="f1")
    assert set(answer) >= RECEIPT_FIELDS
    assert re.fullmatch(r"[0-9a-f]{32}", answer["id"])
    assert answer["name"] == "first-file"
    assert answer["schema"] == [
        {"name": "date", "type": "date32[day]"},
        {"name": "ticker", "type": "string"},
        {"name": "price", "type": "double"},
    ]
    # Creating is not idempotent: the same body again makes a second dataset.
    assert api.create(CSV, name="first-file", file_id="f1")["id"] != answer["id"]


def test_list_datasets_with_and_without_trailing_slash(api: Api) -> None:
    dataset_id = api.create(CSV, name="listed")["id"]
    for path in (f"{DATASETS}/", DATASETS):
        response = api.get(path)
        assert response.status_code == 200
        listing = response.json()
        assert isinstance(listing, list)
        entry = next(d for d in listing if d["id"] == dataset_id)
        assert entry["name"] == "listed" and set(entry) >= DATASET_FIELDS


def test_list_files_answers_ids_and_receipts(api: Api) -> None:
    dataset_id = api.create(CSV, file_id="b-file")["id"]
    api.add(dataset_id, CSV, file_id="a-file", tags={"k": "v"})
    response = api.get(f"{DATASETS}/{dataset_id}/files")
    assert response.status_code == 200
    listing = response.json()
    assert listing["ids"] == ["a-file", "b-file"]
    assert [f["file_id"] for f in listing["files"]] == listing["ids"]
    for entry in listing["files"]:
        assert set(entry) >= RECEIPT_FIELDS
        assert entry["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert listing["files"][0]["tags"] == {"k": "v"}


def test_delete_file_then_dataset(api: Api) -> None:
    dataset_id = api.create(CSV, file_id="keep")["id"]
    api.add(dataset_id, CSV, file_id="drop")
    deleted = api.delete(f"{DATASETS}/{dataset_id}/files/drop")
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.file_ids(dataset_id) == ["keep"]
    assert api.delete(f"{DATASETS}/{dataset_id}/files/drop").status_code == 404

    assert api.delete(f"{DATASETS}/{dataset_id}").status_code == 204
    assert api.get(f"{DATASETS}/{dataset_id}").status_code == 404
    assert api.get(f"{DATASETS}/{dataset_id}/files").status_code == 404
    assert all(d["id"] != dataset_id for d in api.get(DATASETS).json())


def test_sdk_overwrite_mode_deletes_then_recreates(api: Api) -> None:
    """The SDK's mode="overwrite": DELETE the dataset, GET gives 404, PUT creates it again."""
    body = {"name": "again", "schema": sdk_schema(), "identifier": "again", "tags": {}}
    api.put(f"{DATASETS}/again", json=body)
    api.post(f"{DATASETS}/again/files", json=sdk_part("old"))
    assert api.delete(f"{DATASETS}/again").status_code == 204
    assert api.get(f"{DATASETS}/again").status_code == 404
    assert api.put(f"{DATASETS}/again", json=body).status_code == 201
    assert api.file_ids("again") == []


def test_csv_read_and_convert_options_are_honoured(api: Api) -> None:
    latin1 = "name,amount\nZoë,7\nRenée,8\n".encode("latin-1")
    answer = api.create(
        latin1,
        read_options={"encoding": "latin-1"},
        convert_options={"column_types": {"amount": "double"}},
    )
    assert answer["rows"] == 2
    assert answer["schema"] == [
        {"name": "name", "type": "string"},
        {"name": "amount", "type": "double"},
    ]


def test_healthz_needs_no_token(api: Api) -> None:
    response = Api(api.url, token=None).get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
