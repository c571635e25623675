"""The guide's two reference client functions, as published, for tests and benchmarks.

Copied from SigTech's Data Ingestion API guide (``shared/seed/data-ingestion-api.txt``)
unchanged, except that the base URL ``https://api.sigtech.com`` became the keyword
parameter ``base_url`` (same default), so they can run against ``batchload serve``.
This is the baseline batchload is measured against: keep it as the guide wrote it.
"""

import base64
import datetime
import io

import pandas as pd
import pyarrow as pa
import requests
from pyarrow import parquet as pq


def upload_dataframe(  # noqa: PLR0917  (the guide's signature)
    token: str,
    df: pd.DataFrame,
    dataset_name: str = "new_test",
    file_id: str = None,  # noqa: RUF013  (the guide's signature)
    dataset_id: str = None,  # noqa: RUF013
    base_url: str = "https://api.sigtech.com",
):
    """
    Uploads dataframe by either creating a new dataset or appends to
    an existing dataset if dataset_id is provided.
    """
    with io.BytesIO() as f:
        pq.write_table(pa.Table.from_pandas(df), f)
        f.seek(0)
        # Set file_id to current time if not provided
        if not file_id:
            file_id = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
        body = {
            "name": dataset_name,
            "file": base64.b64encode(f.read()).decode(),
            "upload_format": "base64",
            "file_format": "parquet",
            "file_id": file_id,
        }
    headers = {"Authorization": f"Bearer {token}"}
    if dataset_id:
        response = requests.put(
            f"{base_url}/ingestion/datasets/{dataset_id}/files", json=body, headers=headers
        )
    else:
        response = requests.post(f"{base_url}/ingestion/datasets", json=body, headers=headers)
    return response.json()


def upload_data_from_file(  # noqa: PLR0917
    token: str,
    path: str,
    dataset_name: str,
    dataset_id: str = None,  # noqa: RUF013  (the guide's signature)
    file_format: str = "csv",
    file_id: str = None,  # noqa: RUF013
    base_url: str = "https://api.sigtech.com",
):
    """
    Uploads data from file by either creating a new dataset or appends to
    an existing dataset if dataset_id is provided.
    """
    # Set file_id to current time if none provided
    if not file_id:
        file_id = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
    with open(path, "rb") as f:
        body = {
            "name": dataset_name,
            "file": base64.b64encode(f.read()).decode(),
            "upload_format": "base64",
            "file_format": file_format,
            "file_id": file_id,
        }
    headers = {"Authorization": f"Bearer {token}"}
    if dataset_id:
        response = requests.put(
            f"{base_url}/ingestion/datasets/{dataset_id}/files", json=body, headers=headers
        )
    else:
        response = requests.post(f"{base_url}/ingestion/datasets", json=body, headers=headers)
    return response.json()
