"""Reading Web API requests as Slack does: query, form and JSON parameters,
JSON-encoded arguments, bearer tokens, uploads; small value helpers."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import BodyPartReader, web

from tests.support.slack_emulator.records import JSON, JSON_ENCODED_PARAMS


def _is_user_id(value: str) -> bool:
    return len(value) > 1 and value[0] in "UW"


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _split(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def _decode_json_params(params: JSON) -> JSON:
    for key in JSON_ENCODED_PARAMS:
        value = params.get(key)
        if isinstance(value, str):
            # Malformed JSON stays a string: the method then reports it as invalid.
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params


async def _read_params(request: web.Request) -> JSON:
    params: JSON = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            params.update(body if isinstance(body, dict) else {"_body": body})
        else:
            form = await request.post()
            params.update({key: _form_value(value) for key, value in form.items()})
    return _decode_json_params(params)


def _form_value(value: str | bytes | bytearray | web.FileField) -> str | bytes:
    if isinstance(value, web.FileField):
        return value.file.read()
    return value if isinstance(value, str) else bytes(value)


def _bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def _read_upload(request: web.Request) -> bytes:
    """Raw POST body, or the first part of a multipart upload."""
    if not request.content_type.startswith("multipart/"):
        return await request.read()
    reader = await request.multipart()
    part = await reader.next()
    return await part.read() if isinstance(part, BodyPartReader) else b""


def _tz_fields(tz: str) -> JSON:
    now = datetime.now(ZoneInfo(tz))
    offset = now.utcoffset()
    return {
        "tz": tz,
        "tz_label": now.tzname(),
        "tz_offset": int(offset.total_seconds()) if offset else 0,
    }
