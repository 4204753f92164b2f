"""Shared fixtures: one loaded embedding model per test session, real stores in temporary folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "data" / "demo"


@pytest.fixture(scope="session")
def encoder():
    from retrieval.dense import get_dense_encoder

    return get_dense_encoder()


def make_settings(data_dir: Path, **overrides):
    from attest_settings import Settings

    return Settings(data_dir=data_dir, **overrides)


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory, encoder):
    """The demo corpus ingested once per session, in collection "default"; (store, retriever). Tests that
    change a payload put it back."""
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.search import Retriever
    from retrieval.store import EdgeStore

    settings = make_settings(tmp_path_factory.mktemp("demo-index"))
    store = EdgeStore(settings.edge_dir)
    manifest = Manifest(settings.manifest_path)
    Ingester(settings, store, manifest, encoder).run([DEMO])
    manifest.close()
    yield store, Retriever(settings, store, encoder)
    store.close()


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path / "attest-data")


@pytest.fixture
def edge_env(settings, encoder):
    """An embedded store, a manifest and an ingester over a fresh data folder."""
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.store import EdgeStore

    store = EdgeStore(settings.edge_dir)
    manifest = Manifest(settings.manifest_path)
    yield settings, store, manifest, Ingester(settings, store, manifest, encoder)
    store.close()
    manifest.close()


def run_cli(*args: str, data_dir: Path, check: bool = True, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATTEST_DATA_DIR": str(data_dir), **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"attest {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def point_set(store, collection: str = "default") -> dict[str, tuple]:
    """Every stored point's id -> the payload fields that define it (ingested_at excluded)."""
    return {
        hit.id: (hit.payload["doc_id"], hit.payload["chunk_index"], hit.payload["content_hash"], hit.payload["text"],
                 tuple(hit.payload["heading_path"]), hit.payload["page"], tuple(hit.payload["tags"]), hit.payload["title"])
        for hit in store.scroll(collection)
    }
