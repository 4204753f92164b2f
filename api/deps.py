"""FastAPI dependencies: the process's services, the caller (auth), and tenancy checks."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Principal
from api.errors import Problem
from api.logs import tenant_var
from api.services import Services

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key (alternative to Bearer)")


def get_services(request: Request) -> Services:
    return request.app.state.services


async def authenticate(services: Services = Depends(get_services),
                       bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                       api_key: str | None = Depends(_api_key)) -> Principal:
    """The caller: 401 without a valid key (unless the server runs in open mode)."""
    keys = services.keys
    if keys.open_mode:
        principal = keys.open_principal()
    else:
        given = (bearer.credentials if bearer is not None else None) or api_key
        if not given:
            raise Problem(401, "unauthenticated", "Authentication required",
                          "no API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                          headers={"WWW-Authenticate": 'Bearer realm="attest"'})
        principal = keys.lookup(given)
        if principal is None:
            raise Problem(401, "unauthenticated", "Authentication required", "the API key is not valid",
                          headers={"WWW-Authenticate": 'Bearer realm="attest", error="invalid_token"'})
    tenant_var.set(principal.tenant)
    return principal


def collection_not_found(name: str) -> Problem:
    # The same answer whether the collection belongs to another tenant or does not exist at all.
    return Problem(404, "collection-not-found", "Collection not found", f"no collection {name!r} for this API key")


def readable_collection(principal: Principal, name: str | None, settings) -> str:
    name = name or principal.default_collection(settings.collection)
    if not principal.can_read(name):
        raise collection_not_found(name)
    return name


def writable_collection(principal: Principal, name: str | None, settings) -> str:
    name = name or principal.default_collection(settings.collection)
    if not principal.can_write(name):
        if principal.can_read(name):
            raise Problem(403, "read-only-collection", "Collection is read-only",
                          f"this API key may read collection {name!r} but not change it")
        raise collection_not_found(name)
    return name
