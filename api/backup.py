"""Backup and restore of one data directory: the index, the ingest manifest, the state database and the
uploaded files, copied at one consistent moment.

    info = write_backup(settings, store, Path("/backups/attest"))        # what `attest backup DIR` does
    restore_backup(settings, Path("/backups/attest"))                     # `attest restore DIR`

A backup folder holds generations and a ``CURRENT`` file naming the complete one:

    DIR/CURRENT                      "backup-20250101T120000Z-1a2b3c"
    DIR/backup-.../backup.json       format, when, backend, collections and point counts, every file's sha256
    DIR/backup-.../attest.sqlite     the state database (SQLite online backup API)
    DIR/backup-.../manifest.sqlite   the ingest manifest (same)
    DIR/backup-.../state.pgdump      or, with ATTEST_DATABASE_URL=postgresql://..., the state database and the
                                     manifest as one pg_dump (custom format: one snapshot of every table)
    DIR/backup-.../index/<name>/     the embedded shard's files, or points.jsonl exported from a Qdrant server
    DIR/backup-.../uploads/          uploaded files (and the staged files of jobs not yet run)

A new generation is written under a hidden ``.partial-*`` name, every file and folder fsynced, renamed into
place, and only then named by ``CURRENT`` (written to a temporary file, fsynced, renamed): a backup killed
at any moment leaves ``CURRENT`` naming the previous, complete one. Older generations are removed after.

Consistency: the caller passes ``quiesce``, which the server implements by holding every collection's lock
(an ingest job finishes the collection it is writing first; new jobs and deletes wait) and pausing the
store's writes (semantic-cache entries wait); searches and answers go on meanwhile. With the state in PostgreSQL
those locks are also taken across workers (an advisory lock: ``api.jobs.CollectionLocks``). The state
is then dumped by ``pg_dump`` inside that window: its snapshot and the index copy see the same documents (the
manifest's rows are written by the ingest jobs the collection locks hold back); rows written meanwhile by
answers (usage, query records) are in the dump or not, as in any live backup.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager

from api.server_lock import pid_alive

FORMAT = "attest-backup/1"
CURRENT = "CURRENT"
PARTIAL = ".partial-"
STATE_FILES = ("attest.sqlite", "manifest.sqlite")
STATE_DUMP = "state.pgdump"
ADMIN_TOKEN = "admin.token"
_ONE_AT_A_TIME = threading.Lock()  # two backups in one process would take each other's partial folder


class BackupError(RuntimeError):
    """A backup or restore that cannot go on; the message says why and what to do."""


# ---- the pieces ---------------------------------------------------------------------------------------
def sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API: writers may go on meanwhile)."""
    src = sqlite3.connect(str(source))
    dst = sqlite3.connect(str(target))
    try:
        src.execute("PRAGMA busy_timeout=5000")
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        dst.close()
        src.close()


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inventory(root: Path) -> dict[str, dict]:
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel != "backup.json":
            files[rel] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    return files


def _copy_uploads(source: Path, target: Path, live_jobs: set[str]) -> None:
    """The uploads folder, with only the staged files of jobs the state database knows as queued/running
    (a staging folder of an upload still being received belongs to no job yet)."""
    if not source.is_dir():
        return

    def ignore(folder: str, names: list[str]) -> list[str]:
        if Path(folder).name == ".incoming":
            return [n for n in names if n not in live_jobs]
        return []

    shutil.copytree(source, target, ignore=ignore)


def _live_jobs(url: str) -> set[str]:
    """The ids of upload jobs not yet run, read from the state database at ``url`` (the copy just made)."""
    from attest_db import Database

    db = Database(url)
    try:
        tables = db.one("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'api_jobs'"
                        if db.dialect == "postgresql" else
                        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'api_jobs'")[0]
        if not tables:  # nothing was ever uploaded
            return set()
        return {r[0] for r in db.all("SELECT id FROM api_jobs WHERE status IN ('queued', 'running')")}
    finally:
        db.close()


# ---- PostgreSQL state: pg_dump and pg_restore ------------------------------------------------------------
def _pg_tool(name: str) -> str:
    """Debian's newest versioned binary (pg_dump must be at least as new as the server), else PATH's."""
    def version(path: str) -> tuple:
        number = Path(path).parts[-3]
        return tuple(int(p) for p in number.split(".") if p.isdigit())

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version)
    tool = found[-1] if found else shutil.which(name)
    if not tool:
        raise BackupError(f"{name} is not installed: the state is in PostgreSQL, and attest backs it up with "
                          f"PostgreSQL's own tools (Debian: apt-get install postgresql-client)")
    return tool


def _run_pg_tool(args: list[str], what: str, url: str) -> None:
    from attest_db import redact

    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
    if done.returncode != 0:
        detail = done.stderr.strip().replace(url, redact(url))[-800:]
        raise BackupError(f"{what} of {redact(url)} failed (exit {done.returncode}): {detail}")


def pg_dump(url: str, target: Path) -> None:
    """One consistent snapshot of the whole database (pg_dump runs in one repeatable-read transaction)."""
    _run_pg_tool([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--file", str(target),
                  "--dbname", url], "pg_dump", url)


def _pg_tables(url: str) -> list[str]:
    from attest_db import Database

    db = Database(url)
    try:
        return [r[0] for r in db.all("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                     "current_schema() ORDER BY table_name")]
    finally:
        db.close()


def pg_restore(url: str, dump: Path, replace: bool) -> None:
    """Load ``dump`` into the database at ``url`` in one transaction: an error changes nothing. ``replace``
    drops the tables the dump holds first."""
    args = [_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error"]
    if replace:
        args += ["--clean", "--if-exists"]
    _run_pg_tool([*args, "--dbname", url, str(dump)], "pg_restore", url)


# ---- backup -------------------------------------------------------------------------------------------
def current_generation(folder: Path) -> Path | None:
    """The complete backup ``folder/CURRENT`` names, or None."""
    try:
        name = (Path(folder) / CURRENT).read_text().strip()
    except OSError:
        return None
    path = Path(folder) / name
    return path if name and (path / "backup.json").is_file() else None


def _clean_partials(folder: Path) -> None:
    """Remove what killed backups left: ``.partial-*`` folders whose process is gone."""
    for path in folder.glob(PARTIAL + "*"):
        pid = path.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and pid_alive(int(pid)) and int(pid) != os.getpid()):
            shutil.rmtree(path, ignore_errors=True)


def _state_database(settings) -> str | None:
    """The PostgreSQL URL the state lives in, or None for the data directory's SQLite files."""
    from attest_db import is_postgres

    url = getattr(settings, "database_url", None)
    if not url:
        return None
    if is_postgres(url):
        return url
    raise BackupError(f"the state is in {url} (ATTEST_DATABASE_URL), not in the data directory: unset it to back "
                      f"up the data directory's attest.sqlite, or copy that file with the SQLite backup API")


def write_backup(settings, store, folder: Path, quiesce: Callable[[], ContextManager] | None = None,
                 keep: int = 1, progress: Callable[[str], None] | None = None) -> dict:
    """Write a new backup generation of ``settings.data_dir`` (and ``store``) into ``folder``; returns its
    ``backup.json``. ``quiesce()`` is held while anything is copied (see the module's docstring)."""
    with _ONE_AT_A_TIME:
        return _write_backup(settings, store, folder, quiesce, keep, progress or (lambda _: None))


def _write_backup(settings, store, folder, quiesce, keep, progress) -> dict:
    folder = Path(folder).resolve()
    data_dir = Path(settings.data_dir).resolve()
    postgres = _state_database(settings)
    if folder == data_dir or data_dir in folder.parents:
        raise BackupError(f"the backup folder {folder} is inside the data directory {data_dir}: choose another")
    folder.mkdir(parents=True, exist_ok=True)
    _clean_partials(folder)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"backup-{stamp}-{uuid.uuid4().hex[:6]}"
    partial = folder / f"{PARTIAL}{name}-{os.getpid()}"
    partial.mkdir()
    started = time.monotonic()
    backend = "qdrant-server" if settings.qdrant_url else "edge"
    collections: dict[str, int] = {}
    with (quiesce or nullcontext)():
        with store.writes_paused():
            paused_at = time.monotonic()
            if postgres:
                progress("state pg_dump")
                pg_dump(postgres, partial / STATE_DUMP)
            for state in () if postgres else STATE_FILES:
                source = data_dir / state
                if source.exists():
                    progress(f"state {state}")
                    sqlite_copy(source, partial / state)
            for collection in store.list_collections():
                progress(f"index {collection}")
                collections[collection] = store.backup_collection(collection, partial / "index" / collection)
            progress("uploads")
            _copy_uploads(data_dir / "uploads", partial / "uploads", 
                          _live_jobs(postgres or f"sqlite:///{partial / 'attest.sqlite'}"))
            paused_s = time.monotonic() - paused_at
    progress("checksums")
    info = {"format": FORMAT, "name": name, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "backend": backend, "state": "postgresql" if postgres else "sqlite", "data_dir": str(data_dir), "collections": collections,
            "writes_paused_s": round(paused_s, 3), "files": _inventory(partial)}
    (partial / "backup.json").write_text(json.dumps(info, indent=2) + "\n")
    progress("fsync")
    _fsync_tree(partial)
    final = folder / name
    partial.rename(final)
    _fsync_dir(folder)
    progress("commit")
    pointer = folder / f".{CURRENT}.tmp-{os.getpid()}"
    with open(pointer, "w") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(pointer, folder / CURRENT)
    _fsync_dir(folder)
    _prune(folder, keep)
    info["seconds"] = round(time.monotonic() - started, 3)
    info["path"] = str(final)
    return info


def _prune(folder: Path, keep: int) -> None:
    current = current_generation(folder)
    generations = sorted((p for p in folder.glob("backup-*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    kept = 0
    for path in generations:
        if path == current or kept < keep:
            kept += 1
            continue
        shutil.rmtree(path, ignore_errors=True)


# ---- restore ------------------------------------------------------------------------------------------
def read_backup(folder: Path, verify: bool = True) -> tuple[Path, dict]:
    """The current generation of ``folder`` and its ``backup.json``, every file's checksum verified."""
    folder = Path(folder)
    generation = current_generation(folder)
    if generation is None:
        raise BackupError(f"no complete backup in {folder} (no {CURRENT} file naming one)")
    info = json.loads((generation / "backup.json").read_text())
    if info.get("format") != FORMAT:
        raise BackupError(f"{generation} is not an attest backup of format {FORMAT} (found {info.get('format')!r})")
    if verify:
        for rel, expected in info["files"].items():
            path = generation / rel
            if not path.is_file() or _sha256(path) != expected["sha256"]:
                raise BackupError(f"the backup {generation} is damaged: {rel} is missing or changed")
    return generation, info


def _holds_state(data_dir: Path) -> list[str]:
    return [name for name in ("qdrant", "uploads", *STATE_FILES) if (data_dir / name).exists()]


def restore_backup(settings, folder: Path, force: bool = False, store=None,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Bring ``settings.data_dir`` (and, with a Qdrant server, its collections) to the state of the current
    backup in ``folder``. The data directory must hold no index or state, unless ``force``: then it is kept,
    renamed ``<data_dir>.before-restore-<time>``. Nothing is changed until the backup is verified."""
    from api.server_lock import find_running_server

    from attest_db import redact

    progress = progress or (lambda _: None)
    postgres = _state_database(settings)
    generation, info = read_backup(folder)
    data_dir = Path(settings.data_dir).resolve()
    server = find_running_server(settings, probe=False)
    if server is not None:
        raise BackupError(f"`attest serve` (pid {server.pid}) is running on {data_dir}: stop it before restoring")
    to_server = bool(settings.qdrant_url)
    if (info["backend"] == "qdrant-server") != to_server:
        wanted = "a Qdrant server (set ATTEST_QDRANT_URL)" if info["backend"] == "qdrant-server" \
            else "the embedded index (unset ATTEST_QDRANT_URL)"
        raise BackupError(f"this backup holds a {info['backend']} index: restore it into {wanted}")
    state_kind = info.get("state", "sqlite")
    if (state_kind == "postgresql") != bool(postgres):
        wanted = "a PostgreSQL database (set ATTEST_DATABASE_URL=postgresql://...)" if state_kind == "postgresql" \
            else "the data directory's SQLite files (unset ATTEST_DATABASE_URL)"
        raise BackupError(f"this backup holds {state_kind} state: restore it into {wanted}")
    present = _holds_state(data_dir)
    if present and not force:
        raise BackupError(f"{data_dir} already holds {', '.join(present)}: restore into a fresh data directory, "
                          f"or pass --force to keep the current one aside as {data_dir.name}.before-restore-<time>")
    tables = _pg_tables(postgres) if postgres else []
    if tables and not force:
        raise BackupError(f"the database {redact(postgres)} already holds {len(tables)} table(s) "
                          f"({', '.join(tables[:4])}{', ...' if len(tables) > 4 else ''}): restore into an empty "
                          f"database, or pass --force to keep its contents aside as a pg_dump beside the data "
                          f"directory ({data_dir.name}.before-restore-<time>.pgdump) and replace them")
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = data_dir.parent / f".{data_dir.name}.restoring-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for state in STATE_FILES:
        if (generation / state).exists():
            progress(f"state {state}")
            shutil.copy2(generation / state, staging / state)
    if (generation / "uploads").exists():
        progress("uploads")
        shutil.copytree(generation / "uploads", staging / "uploads")
    restored: dict[str, int] = {}
    if not to_server:
        from retrieval.store import EdgeStore

        target = EdgeStore(staging / "qdrant")
        try:
            for collection in info["collections"]:
                progress(f"index {collection}")
                restored[collection] = target.restore_collection(collection, generation / "index" / collection)
        finally:
            target.close()
    _fsync_tree(staging)

    if postgres:  # before the data directory moves: a failed pg_restore changes nothing (one transaction)
        if tables:
            kept = data_dir.with_name(f"{data_dir.name}.before-restore-{stamp}.pgdump")
            pg_dump(postgres, kept)
            progress(f"kept the database's previous contents as {kept}")
        progress(f"state pg_restore into {redact(postgres)}")
        pg_restore(postgres, generation / STATE_DUMP, replace=bool(tables))
    if force and present:
        aside = data_dir.with_name(f"{data_dir.name}.before-restore-{stamp}")
        data_dir.rename(aside)
        progress(f"kept the previous data directory as {aside}")
    if data_dir.exists():  # only non-state entries are left (e.g. cache/models): they move along
        for entry in data_dir.iterdir():
            entry.rename(staging / entry.name)
    staging.rename(data_dir)  # atomic: replaces the (now empty) data directory
    _fsync_dir(data_dir.parent)

    if to_server:
        if store is None:
            from retrieval.store import open_store

            store = open_store(settings)
        for collection in info["collections"]:
            if store.has_collection(collection):
                if not force:
                    raise BackupError(f"collection {collection!r} already exists on the Qdrant server: drop it "
                                      f"or pass --force")
                store.drop_collection(collection)
            progress(f"index {collection}")
            restored[collection] = store.restore_collection(collection, generation / "index" / collection)
    for collection, points in info["collections"].items():
        if restored.get(collection) != points:
            raise BackupError(f"collection {collection!r}: restored {restored.get(collection)} points, the backup "
                              f"holds {points}")
    return {"backup": str(generation), "data_dir": str(data_dir), "collections": restored, "state": state_kind,
            "created_at": info["created_at"]}


# ---- the server's side --------------------------------------------------------------------------------
def admin_token_path(settings) -> Path:
    return Path(settings.data_dir) / ADMIN_TOKEN


def ensure_admin_token(settings) -> str:
    """The token that lets a local `attest backup` ask the server to back itself up: a file only those who
    can read the data directory can read (they could copy the data anyway)."""
    import secrets

    path = admin_token_path(settings)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{ADMIN_TOKEN}.tmp-{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")
    try:
        os.link(partial, path)  # two processes creating it at once: the first one wins
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)
    return path.read_text().strip()
