"""Uploads and ingest jobs: files saved under ``<data_dir>/uploads/<tenant>/<collection>/``, ingested by one
background worker through the same ``Ingester`` as ``attest ingest``.

An upload is staged in ``<collection folder>/.incoming/<job id>/`` (a hidden folder: the ingester skips it)
and moved into place when its job starts, so a job reports exactly its own files. The job ingests the
collection's upload folder as a whole, which is idempotent: files of earlier jobs are unchanged and cost
only a hash. A file that cannot be read is reported with the reason and removed from the folder; the rest
are ingested. Jobs survive a restart: queued or interrupted ones run again when the server starts.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import socket
import threading
import unicodedata
import uuid
import zlib
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from api.records import Records, utc_now

log = logging.getLogger("attest.api.jobs")

INCOMING = ".incoming"
_UNSAFE = re.compile(r"[^\w. -]+")  # \w: letters and digits of any script, and "_"


def sanitise_name(name: str) -> str:
    """A safe relative path from a client's file name: each segment reduced to letters, digits, '.', '_',
    '-' and spaces; no '..', no leading dots (hidden files), no absolute paths, at most 4 levels, segments
    of at most 120 characters (a file name keeps its extension).

    >>> sanitise_name("../../etc/passwd")
    'etc/passwd'
    >>> sanitise_name("C:\\\\Users\\\\me\\\\Report (final).pdf")
    'C/Users/me/Report final.pdf'
    """
    name = unicodedata.normalize("NFKC", name or "").replace("\\", "/")
    parts = []
    for segment in PurePosixPath(name).parts:
        segment = _UNSAFE.sub("", segment).strip().lstrip(".").strip()
        segment = re.sub(r"\s+", " ", segment)
        if len(segment) > 120:
            stem, dot, suffix = segment.rpartition(".")
            segment = stem[:110] + dot + suffix[:9] if dot and len(suffix) <= 9 else segment[:120]
        if segment and segment not in (".", ".."):
            parts.append(segment)
    return "/".join(parts[-4:])


class CollectionLocks:
    """One lock per collection: the job worker and document deletes never write a collection at once.

    With the state in PostgreSQL the workers are several processes: a writer then also holds a shared
    advisory lock, and ``hold_all`` (a backup) the exclusive one, so a backup written by one worker waits for
    every worker's writes in flight and holds back new ones. Each hold has its own connection: a worker
    that dies lets go with it."""

    ADVISORY_KEY = zlib.crc32(b"attest-index-writes")

    def __init__(self, database_url: str | None = None):
        from attest_db import is_postgres

        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._barrier = threading.Lock()  # held by hold_all: no new collection lock is handed out meanwhile
        self._database_url = database_url if database_url and is_postgres(database_url) else None

    def get(self, collection: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(collection, threading.Lock())

    @contextmanager
    def hold(self, collection: str, timeout: float = -1):
        if not self._barrier.acquire(timeout=timeout):
            raise TimeoutError(collection)
        try:
            lock = self.get(collection)
        finally:
            self._barrier.release()
        if not lock.acquire(timeout=timeout):
            raise TimeoutError(collection)
        try:
            with self._across_workers("pg_advisory_lock_shared", timeout, collection):
                yield
        finally:
            lock.release()

    @contextmanager
    def hold_all(self, timeout: float = -1):
        """Every collection at once (a backup): waits for the job writing one to finish; new writers wait."""
        if not self._barrier.acquire(timeout=timeout):
            raise TimeoutError("all collections")
        held: list[threading.Lock] = []
        try:
            with self._guard:
                locks = list(self._locks.values())
            for lock in locks:
                if not lock.acquire(timeout=timeout):
                    raise TimeoutError("all collections")
                held.append(lock)
            with self._across_workers("pg_advisory_lock", timeout, "all collections"):
                yield
        finally:
            for lock in held:
                lock.release()
            self._barrier.release()

    @contextmanager
    def _across_workers(self, function: str, timeout: float, what: str):
        if self._database_url is None:
            yield
            return
        import psycopg

        with psycopg.connect(self._database_url, autocommit=True) as conn:
            if timeout >= 0:
                conn.execute(f"SET lock_timeout = {max(1, int(timeout * 1000))}")
            try:
                conn.execute(f"SELECT {function}(%s)", (self.ADVISORY_KEY,))
            except psycopg.errors.LockNotAvailable:
                raise TimeoutError(what) from None
            yield  # the lock goes with the connection


class _Tracker:
    """The ingester's progress callbacks, turned into per-file outcomes: a file whose ``file_done`` follows a
    ``chunks_done`` was written; one without was unchanged (or failed: the report's failures say which)."""

    def __init__(self, on_file=None):
        self.chunks: dict[str, int] = {}
        self.done: set[str] = set()
        self._pending: int | None = None
        self._on_file = on_file  # renews the job's lease while it runs

    def start(self, files: int) -> None: ...

    def chunks_done(self, n: int) -> None:
        self._pending = n

    def file_done(self, path: str) -> None:
        if self._on_file is not None:
            self._on_file()
        key = str(Path(path).resolve())
        self.done.add(key)
        if self._pending is not None:
            self.chunks[key] = self._pending
            self._pending = None


# A running job is held by one worker for this long, renewed after every file: a worker that died without
# saying so loses its jobs to the others once the lease runs out (at once, to a worker of the same host that
# starts; otherwise to the first idle worker sweeping after that).
JOB_LEASE_S = 600.0
JOB_SWEEP_S = 60.0  # how often an idle worker offers itself the unfinished jobs (claim_job decides)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_local_worker(owner: str | None) -> bool:
    """``owner`` names a process of this host that is gone (killed; its lease is void)."""
    try:
        host, pid, _ = (owner or "").rsplit(":", 2)
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return host == socket.gethostname()
    except (ValueError, PermissionError, OSError):
        return False
    return False


class JobRunner:
    """Stages uploads and runs ingest jobs one at a time on a background thread. With several workers on one
    state database, each job is claimed by exactly one of them (``Records.claim_job``)."""

    def __init__(self, settings, store, records: Records, locks: CollectionLocks, encoder=None, metrics=None):
        self.settings = settings
        self.store = store
        self.records = records
        self.locks = locks
        self.encoder = encoder
        self.metrics = metrics
        self.uploads = Path(settings.data_dir).resolve() / "uploads"
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._ingester = None
        self._manifest = None
        self.busy = threading.Event()
        self.owner = _worker_id()

    def collection_dir(self, tenant: str, collection: str) -> Path:
        return self.uploads / sanitise_name(tenant).replace("/", "_") / collection

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._work, name="attest-ingest", daemon=True)
        self._thread.start()
        for job_id, owner in self.records.running_job_owners().items():
            if _dead_local_worker(owner) and self.records.release_job(job_id, owner):
                log.info("ingest job %s was held by %s, which is gone: queued again", job_id, owner)
        for job in self.records.unfinished_jobs():
            log.info("resuming ingest job %s", job["id"])
            self._queue.put(job["id"])

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None
        if self._manifest is not None:
            self._manifest.close()
            self._manifest = None

    # ---- a new job -------------------------------------------------------------------------------------
    def new_job_id(self) -> str:
        return "job_" + uuid.uuid4().hex[:20]

    def staging_dir(self, tenant: str, collection: str, job_id: str) -> Path:
        return self.collection_dir(tenant, collection) / INCOMING / job_id

    def submit(self, job: dict) -> None:
        """``job``: id, tenant, collection, files (JobFile dicts; status pending ones are staged)."""
        self.records.save_job(job)
        self._queue.put(job["id"])

    # ---- the worker ------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            try:
                job_id = self._queue.get(timeout=JOB_SWEEP_S)
            except queue.Empty:  # idle: look for jobs another worker took and then lost (its lease ran out)
                for job in self.records.unfinished_jobs():
                    self._queue.put(job["id"])
                continue
            if job_id is None:
                return
            job = self.records.job(job_id)
            if job is None or job["status"] not in ("queued", "running"):
                continue
            if not self.records.claim_job(job_id, self.owner, JOB_LEASE_S):
                continue  # another worker holds it
            self.busy.set()
            try:
                self._run(job)
            except Exception as exc:  # the job fails with its reason; the worker lives on
                log.error("ingest job %s failed", job_id, exc_info=exc)
                job.update(status="failed", finished_at=utc_now(),
                           error=f"the ingest job failed ({type(exc).__name__}: {exc})")
                for f in job["files"]:
                    if f["status"] == "pending":
                        f.update(status="failed", reason="not ingested: the job failed")
                self.records.save_job(job)
                if self.metrics is not None:
                    self.metrics.jobs.labels("failed").inc()
            finally:
                self.busy.clear()

    def _ingester_for(self):
        if self._ingester is None:
            from ingest.manifest import Manifest
            from ingest.pipeline import Ingester

            self._manifest = Manifest(self.settings.manifest_url)
            self._ingester = Ingester(self.settings, self.store, self._manifest, self.encoder)
        return self._ingester

    def _run(self, job: dict) -> None:
        job.update(status="running", started_at=utc_now())
        self.records.save_job(job)
        collection = job["collection"]
        root = self.collection_dir(job["tenant"], collection)
        staging = self.staging_dir(job["tenant"], collection, job["id"])
        pending = [f for f in job["files"] if f["status"] == "pending"]
        with self.locks.hold(collection):
            for f in pending:
                source, target = staging / f["name"], root / f["name"]
                if source.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(source, target)
                elif not target.exists():
                    f.update(status="failed", reason="the uploaded file was lost before ingestion (server restart?)")
            shutil.rmtree(staging, ignore_errors=True)
            tracker = _Tracker(lambda: self.records.renew_job(job["id"], self.owner, JOB_LEASE_S))
            report = self._ingester_for().run([root], collection, progress=tracker)
            failures = {str(Path(x["path"]).resolve()): x["reason"] for x in report.failures}
            for f in pending:
                if f["status"] != "pending":
                    continue
                key = str((root / f["name"]).resolve())
                if key in failures:
                    f.update(status="failed", reason=failures[key])
                    (root / f["name"]).unlink(missing_ok=True)  # never retried by later jobs
                elif key in tracker.chunks:
                    f.update(status="ingested", chunks=tracker.chunks[key])
                elif key in tracker.done:
                    f.update(status="unchanged")
                else:
                    f.update(status="failed", reason="not ingested (skipped by the reader)")
                    (root / f["name"]).unlink(missing_ok=True)
        ok = [f for f in job["files"] if f["status"] in ("ingested", "unchanged")]
        bad = [f for f in job["files"] if f["status"] in ("failed", "rejected")]
        job.update(status="succeeded" if not bad else ("partial" if ok else "failed"), finished_at=utc_now(),
                   summary={"files_ingested": sum(f["status"] == "ingested" for f in job["files"]),
                            "files_unchanged": sum(f["status"] == "unchanged" for f in job["files"]),
                            "files_failed": len(bad), "chunks_written": report.chunks_written,
                            "chunks_deleted": report.chunks_deleted, "seconds": report.seconds})
        self.records.save_job(job)
        if self.metrics is not None:
            self.metrics.jobs.labels(job["status"]).inc()
            for f in job["files"]:
                self.metrics.files.labels(f["status"]).inc()
        log.info("ingest job finished", extra={"job_id": job["id"], "status": job["status"],
                                               "collection": collection, **job["summary"]})
