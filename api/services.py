"""The long-lived parts one API process holds: the store, the question path, keys, records, jobs, metrics,
and the human-review desk."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Literal

from api.admission import Admission
from api.auth import KeyStore
from api.jobs import CollectionLocks, JobRunner
from api.metrics import Metrics
from api.question import QuestionPath
from api.records import Records
from api.review import ReviewDesk
from attest_settings import Settings
from grounding.decide import Grounder
from ingest.manifest import Manifest
from retrieval.store import VectorStore

log = logging.getLogger("attest.api")


@dataclass
class Services:
    settings: Settings
    store: VectorStore
    question: QuestionPath      # owns the answer pipeline and the grounder; closed with the rest
    keys: KeyStore
    records: Records
    jobs: JobRunner
    locks: CollectionLocks
    metrics: Metrics
    admission: Admission
    manifest: Manifest
    reviews: ReviewDesk
    manifest_lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    @classmethod
    def build(cls, settings: Settings, store: VectorStore | None = None, encoder=None,
              grounder: Grounder | None | Literal["auto"] = "auto", tracer=None) -> "Services":
        """Open everything the settings name. ``store``/``encoder``/``grounder`` may be given (tests, or a
        caller that already holds them); ``grounder=None`` serves answers unverified (see QuestionPath)."""
        from retrieval.dense import get_dense_encoder
        from retrieval.store import open_store
        from review.store import ReviewStore

        metrics = Metrics()
        store = store if store is not None else open_store(settings)
        encoder = encoder or get_dense_encoder()
        records = Records(settings.state_url)
        locks = CollectionLocks(settings.database_url)
        reviews = ReviewDesk(settings, ReviewStore(settings.state_url), records=records, metrics=metrics)
        question = QuestionPath.build(settings, store, encoder, grounder=grounder, records=records, metrics=metrics,
                                      tracer=tracer, reviews=reviews)
        reviews.question = question
        reviews.start_flagging()
        jobs = JobRunner(settings, store, records, locks, encoder=encoder, metrics=metrics)
        admission = Admission(settings.api_max_concurrent, settings.api_max_queue, settings.api_queue_timeout_s,
                              settings.api_max_inflight_per_key, metrics)
        return cls(settings=settings, store=store, question=question, keys=KeyStore(settings), records=records,
                   jobs=jobs, locks=locks, metrics=metrics, admission=admission,
                   manifest=Manifest(settings.manifest_url), reviews=reviews)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.jobs.stop()
        self.question.close()
        self.reviews.close()
        with self.manifest_lock:
            self.manifest.close()
        self.records.close()
        self.keys.close()
        self.store.close()
