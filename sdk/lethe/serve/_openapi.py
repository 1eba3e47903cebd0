"""OpenAPI links of the app's schema: how one operation's answer feeds the next one's
parameters (file a request -> get, approve, reject, shred, receipt by its ``id``; approve ->
apply its model). Clients and Schemathesis' stateful checks follow them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

__all__ = ["install_links"]

_REQ = "/v1/requests/{request_id}"
_BY_ID = {"request_id": "$response.body#/id"}
#: (source path, method, status) -> [(link name, target path, method, parameters)].
LINKS: dict[tuple[str, str, str], list[tuple[str, str, str, dict[str, str]]]] = {
    ("/v1/requests", "post", "201"): [
        ("GetRequest", _REQ, "get", _BY_ID),
        ("GetReceipt", f"{_REQ}/receipt", "get", _BY_ID),
        ("Approve", f"{_REQ}/approve", "post", _BY_ID),
        ("Reject", f"{_REQ}/reject", "post", _BY_ID),
        ("Shred", f"{_REQ}/shred", "post", _BY_ID),
    ],
    (f"{_REQ}/approve", "post", "200"): [
        ("GetRequest", _REQ, "get", _BY_ID),
        ("GetReceipt", f"{_REQ}/receipt", "get", _BY_ID),
        ("Shred", f"{_REQ}/shred", "post", _BY_ID),
        ("ApplyModel", "/v1/models/{model}/apply", "post", {"model": "$response.body#/model"}),
    ],
    (f"{_REQ}/reject", "post", "200"): [
        ("GetRequest", _REQ, "get", _BY_ID),
        ("Shred", f"{_REQ}/shred", "post", _BY_ID),
    ],
    (f"{_REQ}/shred", "post", "200"): [("GetRequest", _REQ, "get", _BY_ID)],
}


def add_links(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with :data:`LINKS` set on its responses (by the targets' operationId)."""
    paths = schema["paths"]
    for (path, method, status), links in LINKS.items():
        response = paths[path][method]["responses"][status]
        response["links"] = {
            name: {"operationId": paths[to][how]["operationId"], "parameters": dict(params)}
            for name, to, how, params in links
        }
    return schema


def install_links(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/v1/openapi.json``) carry the links."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_links(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
