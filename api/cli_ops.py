"""Operations commands: ``attest backup DIR`` and ``attest restore DIR`` (see ``api/backup.py``).

Registered on the main typer app by ``register(app)``. Heavy imports stay inside the commands: the CLI
starts fast whatever command is run.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _echo(line: str) -> None:
    typer.echo(line, err=True)


def _settings():
    from pydantic import ValidationError

    from attest_settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        _echo(f"invalid configuration: {exc}")
        raise typer.Exit(2)


def backup_command(
    folder: Path = typer.Argument(..., help="Backup folder (created if missing); generations are kept inside it."),
    keep: int = typer.Option(1, "--keep", min=1, max=100, help="Complete backups to keep in the folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the backup's description as JSON on stdout."),
):
    """Back up the index, manifest, state database and uploads at one consistent moment.

    While `attest serve` runs, the server writes the backup and keeps answering; otherwise this command does.
    A backup killed part-way leaves the previous one in the folder intact.
    """
    from api.backup import BackupError, ensure_admin_token, write_backup
    from api.jobs import CollectionLocks
    from api.server_lock import find_running_server
    from retrieval.store import StoreLockedError, open_store

    settings = _settings()
    folder = folder.resolve()
    server = find_running_server(settings)
    try:
        if server is not None:
            info = _backup_through(server, settings, folder, keep, ensure_admin_token(settings))
        else:
            store = open_store(settings)
            try:
                # with the state in PostgreSQL, workers elsewhere may be writing the index: hold them back too
                locks = CollectionLocks(settings.database_url)
                info = write_backup(settings, store, folder, quiesce=locks.hold_all, keep=keep,
                                    progress=lambda s: _echo(f"backup: {s}"))
            finally:
                store.close()
    except BackupError as exc:
        _echo(f"backup failed: {exc}")
        raise typer.Exit(1)
    except StoreLockedError:
        from api.server_lock import store_held_message

        _echo(store_held_message(settings, None, "backup"))
        raise typer.Exit(3)
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        points = ", ".join(f"{name} {n} points" for name, n in info["collections"].items()) or "no collections"
        _echo(f"backup {info['path']} complete ({points}; {len(info['files'])} files; writes paused "
              f"{info['writes_paused_s']:.2f} s, {info['seconds']:.1f} s in all)")


def _backup_through(server, settings, folder: Path, keep: int, token: str) -> dict:
    import httpx

    from api.backup import BackupError

    _echo(f"backup: `attest serve` (pid {server.pid}) holds the data directory; it writes the backup while "
          f"it keeps answering")
    try:
        response = httpx.post(f"{server.url}/v1/admin/backup", json={"target": str(folder), "keep": keep},
                              headers={"X-Attest-Admin-Token": token}, timeout=3600.0)
    except httpx.HTTPError as exc:
        raise BackupError(f"could not reach the server at {server.url}: {exc}") from None
    if response.status_code != 200:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:300]
        raise BackupError(f"the server answered {response.status_code}: {detail}")
    return response.json()


def restore_command(
    folder: Path = typer.Argument(..., help="A backup folder written by `attest backup`."),
    force: bool = typer.Option(False, "--force", help="Restore over a data directory that holds state (it is "
                                                      "kept aside, renamed), or over existing server collections."),
    as_json: bool = typer.Option(False, "--json", help="Print what was restored as JSON on stdout."),
):
    """Bring a fresh data directory to exactly the state of a backup.

    Same point ids, payloads, manifest, state database and uploads in ATTEST_DATA_DIR (or, with
    ATTEST_QDRANT_URL, the collections on that server). The backup is verified before anything changes.
    """
    from api.backup import BackupError, restore_backup

    settings = _settings()
    try:
        result = restore_backup(settings, folder.resolve(), force=force, progress=lambda s: _echo(f"restore: {s}"))
    except BackupError as exc:
        _echo(f"restore failed: {exc}")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        points = ", ".join(f"{name} {n} points" for name, n in result["collections"].items()) or "no collections"
        _echo(f"restored {result['backup']} (taken {result['created_at']}) into {result['data_dir']}: {points}")


def register(app: typer.Typer) -> None:
    app.command("backup")(backup_command)
    app.command("restore")(restore_command)
