"""The OpenAPI document of the HTTP endpoints operators and HR systems call."""

from __future__ import annotations

from typing import Any

_SIG_HEADERS = [
    {
        "name": "X-AccessBot-Timestamp",
        "in": "header",
        "required": True,
        "description": "Unix seconds; requests older than 300 s are refused.",
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

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document() -> dict[str, Any]:
    offboard_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "format": "email", "maxLength": 254},
            "slack_user_id": {"type": "string", "pattern": "^[UW][A-Z0-9]{2,20}$"},
            "reason": {"type": "string", "maxLength": 500},
        },
        "oneOf": [{"required": ["email"]}, {"required": ["slack_user_id"]}],
    }
    result = {
        "type": "object",
        "properties": {
            "user": {"type": "string"},
            "revoked": {"type": "array", "items": {"type": "string"}},
            "cancelled": {"type": "array", "items": {"type": "string"}},
            "verified": {
                "type": "object",
                "description": "Per cluster the user had access on: when the bot confirmed "
                "none of the user's objects remain there (RFC 3339 UTC).",
                "additionalProperties": {"type": "string", "format": "date-time"},
            },
        },
        "required": ["user", "revoked", "cancelled", "verified"],
    }
    pending = {
        "type": "object",
        "properties": {
            "user": {"type": "string"},
            "pending": {
                "type": "array",
                "description": "Grants whose objects may still exist; retry the call.",
                "items": {
                    "type": "object",
                    "properties": {"grant": {"type": "string"}, "cluster": {"type": "string"}},
                    "required": ["grant", "cluster"],
                },
            },
        },
        "required": ["user", "pending"],
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "AccessBot", "version": "1"},
        "paths": {
            "/hooks/offboard": {
                "post": {
                    "summary": "Revoke everything a departing person holds, at once",
                    "parameters": _SIG_HEADERS,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": offboard_body}},
                    },
                    "responses": {
                        "200": _json(
                            result,
                            "Every grant of the user is gone on every cluster "
                            "(repeating is harmless)",
                        ),
                        "503": _json(
                            {"oneOf": [pending, _ERROR]},
                            "Not finished: these grants' objects may still exist; the user "
                            "is blocked and cleanup continues; retry (each retry makes progress). "
                            "Or Slack could not tell who the user is (an error body): retry",
                        ),
                        "400": _json(_ERROR, "Malformed body"),
                        "401": _json(_ERROR, "Bad or stale signature"),
                        "404": _json(_ERROR, "Unknown user (or the webhook is disabled)"),
                        "413": _json(_ERROR, "Body over 64 KiB"),
                    },
                }
            },
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
        },
    }
