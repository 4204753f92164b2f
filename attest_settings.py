"""attest's one configuration object.

Read once at start (environment variables prefixed ``ATTEST_``, then an optional ``attest.toml`` in the
working directory, then the defaults below) and passed down; no other module reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATTEST_", toml_file="attest.toml", extra="ignore")

    # Where the index, the manifest, the SQLite database and model caches live.
    data_dir: Path = Path(".attest")
    collection: str = "default"

    # Vector store backend: the embedded qdrant-edge shard, or a Qdrant server/cluster.
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_shard_number: int = Field(default=1, ge=1)
    qdrant_replication_factor: int = Field(default=1, ge=1)

    # Chunking, in tokens of the embedding model's tokenizer.
    chunk_tokens: int = Field(default=256, ge=32, le=512)
    chunk_overlap: int = Field(default=32, ge=0)
    embed_batch_size: int = Field(default=32, ge=1, le=1024)
    # Threads torch may use while embedding documents (ingest) and queries (serving).
    ingest_threads: int = Field(default=2, ge=1)
    query_threads: int = Field(default=1, ge=1)
    # Points written to the store per update call; a killed run loses at most one batch of work.
    write_batch_size: int = Field(default=256, ge=1)
    # Chunks embedded together before their documents are written (length-sorted batches inside).
    ingest_group_chunks: int = Field(default=512, ge=1)
    # Larger files are reported and skipped: 25 MB of text is hours of embedding on a small CPU.
    max_file_mb: float = Field(default=25.0, gt=0)

    # BM25 term-frequency saturation (k1) and length normalisation (b); IDF is applied by Qdrant.
    bm25_k1: float = Field(default=1.2, ge=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    # Average document length, in BM25 tokens, used for length normalisation.
    bm25_avg_len: float = Field(default=120.0, gt=0)

    # Retrieval defaults.
    top_k: int = Field(default=10, ge=1, le=100)
    prefetch_k: int = Field(default=100, ge=1, le=1000)
    fusion: Literal["rrf", "dbsf", "weighted"] = "weighted"
    rrf_k: int = Field(default=60, ge=1)
    dense_weight: float = Field(default=0.5, ge=0, le=1)

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_chunk(cls, value: int, info) -> int:
        chunk = info.data.get("chunk_tokens", 256)
        if value >= chunk:
            raise ValueError(f"chunk_overlap ({value}) must be smaller than chunk_tokens ({chunk})")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def manifest_path(self) -> Path:
        return self.data_dir / "manifest.sqlite"

    @property
    def edge_dir(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"
