"""A real PostgreSQL for the tests: Debian's server binaries (``.ci/run`` installs the ``postgresql``
package), a cluster made with ``initdb`` in a temporary folder and started with ``pg_ctl`` on a Unix socket
there, once per test session; each test that asks gets a database of its own.

    from tests.pg_fixture import postgres, state_url      # noqa: F401  (pytest finds the fixtures)

    def test_x(state_url): ...     # runs twice: "sqlite:///..." and "postgresql://..."
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Postgres:
    def __init__(self, root: Path, port: int, as_user: list[str]):
        self.root, self.port, self.as_user = root, port, as_user

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://attest@/{database}?host={self.root}&port={self.port}"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def running_postgres(binaries: Path):
    """A throw-away PostgreSQL cluster in a temporary folder (Unix socket only, fsync off), stopped and
    removed on exit. Also used by ``benchmarks/soak.py --postgres``."""
    root = Path(tempfile.mkdtemp(prefix="attest-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data = root / "data"
    subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "attest",
                    "--no-sync"], check=True, capture_output=True)
    port = 15432 + os.getpid() % 20000
    started = subprocess.run(
        [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(root / "log"), "-o",
         f"-p {port} -k {root} -c listen_addresses='' -c fsync=off", "start"], capture_output=True, text=True)
    if started.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{log[-2000:]}")
    try:
        yield Postgres(root, port, as_user)
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    binaries = postgres_bin()
    if binaries is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's server binaries are not installed: .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg")
    with running_postgres(binaries) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request, tmp_path):
    """A fresh, empty state database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    return request.getfixturevalue("postgres").new_database()
