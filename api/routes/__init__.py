"""One router per resource: questions, search, documents and jobs, feedback, health and metrics."""

PROBLEM = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def problems(*codes: int) -> dict:
    """OpenAPI entries for the problem+json answers a route can give."""
    descriptions = {400: "Malformed request", 401: "No or invalid API key", 403: "Not allowed",
                    404: "Not found (or another tenant's)", 409: "Conflict", 413: "Over a size limit",
                    422: "Invalid request", 429: "Too many requests for this key (Retry-After)",
                    503: "Overloaded or not ready (Retry-After)"}
    return {code: {"description": descriptions.get(code, "Error"), **PROBLEM} for code in codes}
