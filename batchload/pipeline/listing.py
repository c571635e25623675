"""The start of a run: what the service holds of each dataset, and what that changes.

The manifest says what this run's sources sent; the service says what is there. Each
run lists every existing dataset's files once (retried like any request), then:

- a file the manifest has as done that the service does not list (deleted with
  ``batchload rm``, lost by the service) is sent again, whole or the parts it lacks;
- a file (or part) the manifest has as sent, its answer never received (a run killed
  mid-request), is in doubt: where the service lists its file_id with the sha256 that
  was sent, it landed and is recorded as done, not sent twice;
- a file_id the service holds that this manifest did not send from the same source is
  another source's file. Where the service reports a sha256 equal to the file's own,
  it is recorded as done without sending ("already on the service"); otherwise
  ``--on-existing`` decides: ``fail`` (the default) sends nothing and reports a
  conflict naming both sources, ``skip`` leaves the service's file alone, ``replace``
  overwrites it. A listing without sha256 (the SDK's has ids only) makes every such
  file a conflict.

Only files whose file_id is known before reading are checked for conflicts: an id made
from the content (``{sha8}``) names those very bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from batchload.errors import FileProblem
from batchload.jobs import PreparedJob, Work
from batchload.pipeline.prepare import file_id_for, make_work
from batchload.read.content import fingerprint_file
from batchload.send.datasets import FileInfo
from batchload.state.ledger import Ledger
from batchload.state.records import FileRecord, resume_decision
from batchload.summary import Problem

OnExisting = Literal["fail", "skip", "replace"]
ON_EXISTING: tuple[OnExisting, ...] = ("fail", "skip", "replace")


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    """One dataset's files as the service listed them at the start of the run."""

    name: str
    dataset_id: str
    files: Mapping[str, FileInfo]


@dataclass(frozen=True, slots=True, kw_only=True)
class Decided:
    """The prepared jobs once the service's listing is taken into account."""

    prepared: list[PreparedJob]
    resent: Mapping[str, int]
    """Dataset name -> files done in the manifest, missing on the service, sent again."""
    found: int = 0
    """Files the service holds already with the same sha256: their work only records
    them (the ``rehash`` of a done file), under the run's claims, and sends nothing."""
    kept: tuple[str, ...] = ()
    """Source paths not sent because the service holds their id (``--on-existing skip``)."""
    conflicts: tuple[Problem, ...] = ()


def decide(
    prepared: Sequence[PreparedJob],
    listed: Mapping[str, Listed],
    *,
    manifest: Ledger,
    on_existing: OnExisting,
    max_request_bytes: int,
) -> Decided:
    """Adjust every job of a listed dataset; blocking (reads the manifest, hashes the few
    files that meet another source's file_id): run it in a thread."""
    jobs: list[PreparedJob] = []
    resent: dict[str, int] = {}
    found = 0
    kept: list[str] = []
    conflicts: list[Problem] = []
    for job in prepared:
        state = listed.get(job.name)
        if state is None:  # not created yet: nothing there to meet
            jobs.append(job)
            continue
        judge = _Judge(job, state, on_existing, manifest)
        work: list[Work] = []
        for item in job.work:
            verdict = judge.work(item)
            if isinstance(verdict, Work):
                work.append(verdict)
            elif isinstance(verdict, tuple):  # there already: confirm the bytes, record
                work.append(replace(item, previous=verdict, decision="rehash"))
                found += 1
            elif isinstance(verdict, Problem):
                conflicts.append(verdict)
            else:
                kept.append(item.source.key)
        lost = judge.lost_sources()
        skipped = tuple(s for s in job.skipped if s.key not in lost)
        if lost:
            rows = manifest.rows_for(job.name, sorted(lost))
            convert = job.contract.convert_options()
            for source in job.skipped:
                path = source.key
                if path in lost:
                    previous = tuple(judge.unlanded(r) for r in rows.get(path, ()))
                    work.append(
                        make_work(
                            job.index,
                            source,
                            file_id_for(job.template, source, None),
                            "send",
                            name=job.name,
                            template=job.template,
                            convert=convert,
                            max_request_bytes=max_request_bytes,
                            previous=previous,
                        )
                    )
        resent[job.name] = resent.get(job.name, 0) + judge.resent + len(lost)
        jobs.append(replace(job, work=tuple(work), skipped=skipped))
    return Decided(
        prepared=jobs,
        resent=resent,
        found=found,
        kept=tuple(kept),
        conflicts=tuple(conflicts),
    )


class _Judge:
    """Decisions for one job against its dataset's listing."""

    def __init__(
        self, job: PreparedJob, state: Listed, on_existing: OnExisting, manifest: Ledger
    ) -> None:
        self.job = job
        self.manifest = manifest
        self.state = state
        self.on_existing = on_existing
        self.resent = 0
        self._parts_derived = "{part}" not in job.template.text
        self._parts: dict[str, list[str]] | None = None

    def unlanded(self, row: FileRecord) -> FileRecord:
        """``row``, no longer done if the service does not list its file_id (so it is sent)."""
        if row.state == "done" and row.file_id not in self.state.files:
            return replace(row, state="sent")
        return row

    def settled(self, row: FileRecord) -> FileRecord:
        """``row``, done if it is in doubt (sent, unanswered) and the service lists its
        file_id in this dataset with the sha256 that was sent."""
        info = self.state.files.get(row.file_id or "")
        if (
            row.state == "sent"
            and info is not None
            and info.sha256
            and info.sha256 == row.sent_sha256
            and row.dataset_id in (None, self.state.dataset_id)  # None: sent to its first
        ):
            return replace(
                row,
                state="done",
                dataset_id=self.state.dataset_id,
                parts=1 if row.part == 0 else row.parts,  # a split's count waits for its end
                last_error="its answer was lost; the service holds it",
            )
        return row

    def lost_sources(self) -> set[str]:
        """Skipped sources (done, unchanged) with a file_id the service does not list."""
        files = self.state.files
        paths = {s.key for s in self.job.skipped}
        return {
            path
            for file_id, path in self.job.recorded.items()
            if path in paths and file_id not in files
        }

    def work(self, item: Work) -> Work | tuple[FileRecord, ...] | Problem | None:
        """The work to do, done rows (there already), a conflict, or None (left alone)."""
        previous = tuple(self.unlanded(r) for r in item.previous)
        if previous != item.previous:
            if item.decision == "rehash":  # unchanged, yet lost: send it, do not skip it
                self.resent += 1
            item = replace(item, previous=previous, decision="send")
        elif (settled := tuple(self.settled(r) for r in previous)) != previous:
            source = item.source
            decision = resume_decision(
                settled, size=source.size, mtime_ns=source.mtime_ns, etag=source.etag
            )
            if decision == "done":  # every row landed, and the file is as it was sent
                return settled
            item = replace(item, previous=settled, decision=decision)
        file_id = item.file_id
        if file_id is None or self.on_existing == "replace":
            return item
        path = item.source.key
        theirs = self._theirs(file_id, item.previous)
        if theirs:  # another process sharing the manifest may have sent it since it was read
            fresh = tuple(self.manifest.rows_for(self.job.name, [path]).get(path, ()))
            if fresh != item.previous:
                item = replace(item, previous=fresh)
                theirs = self._theirs(file_id, fresh)
        if not theirs:
            return item
        if theirs == [item.file_id] and (row := self._same_bytes(item)) is not None:
            return (row,)
        if self.on_existing == "skip":
            return None
        info = self.state.files[theirs[0]]
        received = f"; received {info.received_at}" if info.received_at else ""
        return Problem(
            path=path,
            dataset=self.job.name,
            file_id=theirs[0],
            state="conflict",
            reason=(
                f"conflict: file_id {theirs[0]!r} in dataset {self.job.name} (id "
                f"{self.state.dataset_id}) was put there by another source (not recorded in "
                f"this manifest{received}); this run would send {path}. "
                "Use --on-existing skip|replace to decide."
            ),
        )

    def _theirs(self, file_id: str, rows: tuple[FileRecord, ...]) -> list[str]:
        """The listed ids of the file (its own, its parts') that ``rows`` did not send."""
        ours = {r.file_id for r in rows if r.state in ("done", "sent")}
        return [
            listed
            for listed in self._family(file_id)
            if listed not in ours and self.job.taken_over.get(listed) is None
        ]

    def _family(self, file_id: str) -> list[str]:
        """The listed ids of a file: its own, and those of its parts."""
        own = [file_id] if file_id in self.state.files else []
        if not self._parts_derived:  # the template places {part}: part ids are not derived
            return own
        if self._parts is None:  # indexed once, on the first file that needs it
            self._parts = {}
            for listed in self.state.files:
                if (found := _PART.fullmatch(listed)) is not None:
                    self._parts.setdefault(found.group(1), []).append(listed)
        return own + self._parts.get(file_id, [])

    def _same_bytes(self, item: Work) -> FileRecord | None:
        """A done row when the service reports the file's own sha256 for its id."""
        info = self.state.files[item.file_id or ""]
        if not info.sha256 or item.source.url is not None:  # an object is not read here
            return None
        try:
            fp = fingerprint_file(item.source.path)
        except FileProblem:
            return None  # checking the file will say what is wrong with it
        if fp.sha256 != info.sha256:
            return None
        return FileRecord(
            dataset=self.job.name,
            source_path=item.source.key,
            part=0,
            parts=1,
            file_id=item.file_id,
            size=fp.size,
            mtime_ns=fp.mtime_ns,
            sha256=fp.sha256,
            sent_sha256=fp.sha256,
            file_format=item.source.file_format,
            dataset_id=self.state.dataset_id,
            rows=info.rows,
            state="done",
            last_error="already on the service (same file_id and sha256): not sent",
        )


_PART = re.compile(r"(.+)\.part-\d{4,}")
"""A part's id: its file's id and what a part adds (see
:func:`~batchload.state.fileids.part_label`)."""
