"""The OpenAPI 3.1 document of the HTTP endpoints (CONTRACT.md, "HTTP").

Body schemas are generated from the pydantic models in ``bot.http.schemas`` (the
ones the service parses and renders with), so the document cannot drift from
what is checked; only the headers and statuses are written here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bot.http.schemas import ErrorBody, OffboardBody, OffboardDone, OffboardPending
from bot.http.signing import MAX_SKEW_SECONDS

_MODELS: tuple[type[BaseModel], ...] = (OffboardBody, OffboardDone, OffboardPending, ErrorBody)

_SIG_HEADERS = [
    {
        "name": "X-AccessBot-Timestamp",
        "in": "header",
        "required": True,
        "description": f"Unix seconds; requests older than {MAX_SKEW_SECONDS} s are refused.",
        "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
    },
    {
        "name": "X-AccessBot-Signature",
        "in": "header",
        "required": True,
        "description": 'v1=<hex HMAC-SHA256(secret, "v1:" + timestamp + ":" + raw body)>',
        "schema": {"type": "string"},
    },
]

_SLACK_HEADERS = [
    {
        "name": "X-Slack-Request-Timestamp",
        "in": "header",
        "required": True,
        "description": f"Unix seconds; requests older than {MAX_SKEW_SECONDS} s are refused.",
        "schema": {"type": "string"},
    },
    {
        "name": "X-Slack-Signature",
        "in": "header",
        "required": True,
        "description": "Slack's v0 request signature (api.slack.com/authentication/"
        "verifying-requests-from-slack)",
        "schema": {"type": "string"},
    },
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _component_schemas() -> dict[str, Any]:
    """``components.schemas``: each model's JSON Schema (draft 2020-12, which
    OpenAPI 3.1 uses as is), nested models included."""
    _, top = models_json_schema(
        [(m, "validation") for m in _MODELS], ref_template="#/components/schemas/{model}"
    )
    return dict(top.get("$defs", {}))


def document() -> dict[str, Any]:
    """The whole document, as served at ``GET /openapi.json``."""
    error = _ref(ErrorBody)
    offboard = {
        "summary": "Revoke everything a departing person holds, at once",
        "parameters": _SIG_HEADERS,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(OffboardBody)}},
        },
        "responses": {
            "200": _json(
                _ref(OffboardDone),
                "Every grant of the user is gone on every cluster (repeating is harmless)",
            ),
            "503": _json(
                {"oneOf": [_ref(OffboardPending), error]},
                "Not finished: these grants' objects may still exist; the user "
                "is blocked and cleanup continues; retry (each retry makes progress). "
                "Or Slack could not tell who the user is (an error body): retry",
            ),
            "400": _json(error, "Malformed body"),
            "401": _json(error, "Bad or stale signature"),
            "404": _json(error, "Unknown user (or the webhook is disabled)"),
            "413": _json(error, "Body over 64 KiB"),
        },
    }
    slack_events = {
        "summary": "Slack deliveries: slash commands, interactions, Events API",
        "parameters": _SLACK_HEADERS,
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                "application/json": {"schema": {"type": "object"}},
            },
        },
        "responses": {
            "200": {"description": "Acknowledged"},
            "400": _json(error, "Signed, but not a Slack payload"),
            "401": _json(error, "Bad or stale signature"),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "AccessBot", "version": "1"},
        "paths": {
            "/slack/events": {"post": slack_events},
            "/hooks/offboard": {"post": offboard},
            "/healthz": {"get": {"responses": {"200": {"description": "Process alive"}}}},
            "/readyz": {
                "get": {
                    "responses": {
                        "200": {"description": "Redis and every cluster reachable"},
                        "503": {"description": "Something is down; the body says what"},
                    }
                }
            },
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus text"}}}},
            "/openapi.json": {"get": {"responses": {"200": {"description": "This document"}}}},
        },
        "components": {"schemas": _component_schemas()},
    }
