"""The manifest row of a checked file, or of one of its parts, before it is sent."""

from __future__ import annotations

from collections.abc import Mapping

from batchload.check.checker import Checked
from batchload.jobs import PreparedJob
from batchload.send.sender import DatasetGate
from batchload.state.records import FileRecord


def pending_row(
    gates: Mapping[str, DatasetGate],
    job: PreparedJob,
    checked: Checked,
    *,
    part: int,
    file_id: str | None,
    sent_sha256: str | None,
    rows: int | None,
    file_format: str | None = None,
) -> FileRecord:
    """A file's (or part's) row before its request: what it is, where it goes, and what
    is sent for it (a workbook as parquet, a compressed CSV as its text)."""
    work, fp = checked.work, checked.fingerprint
    converted_from: str | None = None
    if work.convert and file_format == "parquet":  # a workbook, sent as parquet
        converted_from = work.source.file_format
    elif checked.plain is not None and part == 0:  # a compressed CSV, sent as its text
        converted_from = f"csv{work.source.path.suffix.lower()}"
    return FileRecord(
        dataset=job.name,
        source_path=work.source.key,
        part=part,
        parts=None,
        file_id=file_id,
        size=fp.size if fp else work.source.size,
        mtime_ns=fp.mtime_ns if fp else work.source.mtime_ns,
        etag=work.source.etag,
        sha256=fp.sha256 if fp else None,
        sent_sha256=sent_sha256,
        file_format=file_format or work.source.file_format,
        converted_from=converted_from,
        dataset_id=gates[job.name].dataset_id if job.name in gates else None,
        rows=rows,
        state="pending",
    )
