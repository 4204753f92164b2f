"""The FastAPI application: ``create_app(settings)``.

    from api.app import create_app
    app = create_app(Settings())        # then: uvicorn.run(app, host="127.0.0.1", port=8000, workers=1)

Routers per resource (``api/routes``), ``Depends`` for settings, auth and tenancy (``api/deps``), pydantic
models as the contract (``api/schemas``), errors as problem+json (``api/errors``), and the question path
wired once in ``api/question``. With the embedded store the app must run in one process (one worker):
only one process may open the shard.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel, Field

from api.errors import install_error_handlers
from api.logs import configure_logging
from api.middleware import RequestContextMiddleware
from api.services import Services

log = logging.getLogger("attest.api")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="A URI naming the kind of problem (urn:attest:problem:<slug>).")
    title: str
    status: int
    detail: str = Field(description="Why, in words a user can act on.")
    instance: str = Field(description="The request path.")
    request_id: str | None = Field(default=None, description="Quote it when reporting a problem.")


def _document_limits(components: dict, settings) -> None:
    """The schema states this server's configured limits, so clients (and fuzzers) see what is accepted."""
    for model, field, key, value in (
            ("QueryRequest", "question", "maxLength", settings.api_max_question_chars),
            ("QueryRequest", "top_k", "maximum", settings.api_max_top_k),
            ("SearchRequest", "query", "maxLength", settings.api_max_question_chars)):
        prop = components.get(model, {}).get("properties", {}).get(field)
        if prop is None:
            continue
        for option in prop.get("anyOf", [prop]):  # optional fields: {"anyOf": [{...}, {"type": "null"}]}
            if option.get("type") in ("string", "integer"):
                option[key] = min(option.get(key, value), value)
    upload = components.get("Body_upload_v1_documents_post", {}).get("properties", {}).get("files")
    if upload is not None:
        upload.update(minItems=1, maxItems=settings.api_max_upload_files)


def create_app(settings, services: Services | None = None, configure_logs: bool = True) -> FastAPI:
    """The app over ``settings``; ``services`` may be prebuilt (tests share loaded models that way)."""
    from api.telemetry import setup_tracing

    if configure_logs:
        configure_logging(settings)
    tracer, shutdown_tracing = setup_tracing(settings)
    services = services or Services.build(settings, tracer=tracer)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services.jobs.start()
        log.info("attest API ready", extra={"auth_mode": settings.api_auth_mode, "data_dir": str(settings.data_dir),
                                            "keys": services.keys.count()})
        try:
            yield
        finally:
            for hook in app.state.shutdown_hooks:  # e.g. `attest serve` removing its lock file
                hook()
            services.close()
            shutdown_tracing()

    app = FastAPI(title="attest", version="0.1.0", lifespan=lifespan,
                  description="Answers from your documents; every claim checked before it is served.")
    app.state.services = services
    app.state.settings = settings
    app.state.shutdown_hooks = []
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, settings=settings, metrics=services.metrics)

    from api.routes import admin, documents, feedback, health, query, review, review_pages, search

    for module in (query, search, documents, feedback, review, review_pages, health, admin):
        app.include_router(module.router)

    original_openapi = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = original_openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = Problem.model_json_schema()
            _document_limits(components, settings)
        return app.openapi_schema

    app.openapi = openapi
    return app
