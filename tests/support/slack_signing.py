"""Requests built and signed exactly as Slack sends them to our ``/slack/events``.

Every ``*_payload`` function returns the payload as a dict (what Socket Mode carries
in an envelope); every ``*_body`` function returns the raw HTTP body Slack POSTs.
``sign`` adds the headers that Bolt's request verification checks.

    body = slash_command_body("/access", "list", "U0ALICE")
    resp = await http.post(url, data=body, headers=sign(SECRET, body))
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

JSON = dict[str, Any]

# The workspace our tests pretend to live in; the emulator uses the same identity.
TEAM_ID = "T0ACME"
TEAM_DOMAIN = "acme"
APP_ID = "A0ACCESSBOT"
BOT_USER_ID = "U0ACCESSBOT"
BOT_ID = "B0ACCESSBOT"
# Slack still puts the deprecated verification token into payloads; Bolt ignores it.
VERIFICATION_TOKEN = "legacy-verification-token"

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


# --------------------------------------------------------------------------- signing


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """``v0=`` + hex HMAC-SHA256(secret, ``v0:{timestamp}:{body}``), as Slack signs.

    Computed by ``slack_sdk.signature.SignatureVerifier.generate_signature``, the
    algorithm Bolt verifies with. That algorithm is defined over text: a body that
    is not UTF-8 (Slack sends none) is signed over its lenient decoding, a
    signature no verifier accepts for those bytes.
    """
    text = body.decode("utf-8", errors="replace")
    signed = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=text)
    assert signed is not None  # None only for a None timestamp
    return signed


def sign(
    secret: str,
    body: bytes,
    timestamp: int | None = None,
    *,
    content_type: str | None = None,
) -> dict[str, str]:
    """Headers Slack sends with ``body``; ``timestamp`` defaults to now.

    The content type is guessed from the body (JSON for Events API deliveries,
    form-encoded for commands and interactions) unless given.
    """
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature(secret, body, ts),
        "Content-Type": content_type or _guess_content_type(body),
        "User-Agent": SLACK_USER_AGENT,
    }


def retry_headers(retry_num: int, reason: str = "http_timeout") -> dict[str, str]:
    """Extra headers of an Events API redelivery (add them to ``sign``'s)."""
    return {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": reason}


def _guess_content_type(body: bytes) -> str:
    return JSON_CONTENT_TYPE if body.lstrip().startswith(b"{") else FORM_CONTENT_TYPE


# --------------------------------------------------------------------------- ids


def new_trigger_id() -> str:
    """A trigger ID in Slack's shape: ``<seconds>.<digits>.<hex>``."""
    return f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def new_event_id() -> str:
    return "Ev" + secrets.token_hex(5).upper()


def new_action_ts() -> str:
    return f"{time.time():.6f}"


def _hook_url(kind: str, team_id: str) -> str:
    return f"https://hooks.slack.com/{kind}/{team_id}/{secrets.randbelow(10**12)}/{secrets.token_hex(12)}"


def _user(user_id: str, user_name: str | None, team_id: str) -> JSON:
    name = user_name or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def _form(fields: Mapping[str, str]) -> bytes:
    return urlencode(fields).encode()


def _payload_form(payload: JSON) -> bytes:
    return _form({"payload": json.dumps(payload, separators=(",", ":"))})


def _json(payload: JSON) -> bytes:
    return json.dumps(payload).encode()


P = ParamSpec("P")


def _body_of(
    payload: Callable[P, Any], encode: Callable[[Any], bytes], doc: str
) -> Callable[P, bytes]:
    """The ``*_body`` twin of a ``*_payload`` function: same parameters, encoded."""

    def body(*args: P.args, **kwargs: P.kwargs) -> bytes:
        return encode(payload(*args, **kwargs))

    body.__name__ = payload.__name__.replace("_payload", "_body")
    body.__doc__ = doc
    return body


# --------------------------------------------------------------------------- slash commands


def slash_command_payload(
    command: str,
    text: str,
    user_id: str,
    *,
    channel_id: str = "C0GENERAL",
    channel_name: str = "general",
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    response_url: str | None = None,
    trigger_id: str | None = None,
) -> dict[str, str]:
    """The form fields of a slash command (also the Socket Mode payload)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url or _hook_url("commands", team_id),
        "trigger_id": trigger_id or new_trigger_id(),
    }


slash_command_body = _body_of(
    slash_command_payload, _form, "Form-encoded body of a slash command invocation."
)


# --------------------------------------------------------------------------- block actions


def block_actions_payload(
    action_id: str,
    value: str,
    user_id: str,
    channel: str,
    message_ts: str,
    *,
    block_id: str | None = None,
    message: JSON | None = None,
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    response_url: str | None = None,
    trigger_id: str | None = None,
) -> JSON:
    """A button click on a message.

    Pass the stored message (``emu.messages(channel)[i]``) as ``message`` to click
    a real button: the block ID and button text are then taken from it.
    """
    msg = message or _placeholder_message(message_ts)
    block, button = _find_button(msg, action_id, value)
    return {
        "type": "block_actions",
        "user": _user(user_id, user_name, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": _channel_name(channel)},
        "message": msg,
        "state": {"values": {}},
        "response_url": response_url or _hook_url("actions", team_id),
        "actions": [_button_action(action_id, value, block_id or block, button)],
    }


block_actions_body = _body_of(
    block_actions_payload, _payload_form, "Form body (``payload=<json>``) of a button click."
)


def _placeholder_message(ts: str) -> JSON:
    return {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": TEAM_ID,
        "ts": ts,
        "text": "",
        "blocks": [],
    }


def _find_button(message: JSON, action_id: str, value: str) -> tuple[str, JSON]:
    """The block ID and element of the button, or a made-up block for a bare click."""
    fallback: tuple[str, JSON] = (secrets.token_hex(2), {})
    for block in message.get("blocks") or []:
        for element in _interactive_elements(block):
            if element.get("action_id") != action_id:
                continue
            found = (str(block.get("block_id", fallback[0])), element)
            if element.get("value") == value:
                return found
            fallback = found
    return fallback


def _interactive_elements(block: JSON) -> list[JSON]:
    elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
    accessory = block.get("accessory")
    return [*elements, accessory] if isinstance(accessory, dict) else elements


def _button_action(action_id: str, value: str, block_id: str, button: JSON) -> JSON:
    action: JSON = {
        "action_id": action_id,
        "block_id": block_id,
        "text": button.get("text") or {"type": "plain_text", "text": action_id, "emoji": True},
        "value": value,
        "type": "button",
        "action_ts": new_action_ts(),
    }
    if "style" in button:
        action["style"] = button["style"]
    return action


def _channel_name(channel: str) -> str:
    return "directmessage" if channel.startswith("D") else channel.lower()


# --------------------------------------------------------------------------- view submissions


def text_input(value: str | None) -> JSON:
    """State of a ``plain_text_input`` element, for ``view_submission`` values."""
    return {"type": "plain_text_input", "value": value}


def static_select(value: str | None, text: str | None = None) -> JSON:
    """State of a ``static_select`` element (``None``: nothing selected)."""
    if value is None:
        return {"type": "static_select", "selected_option": None}
    option = {"text": {"type": "plain_text", "text": text or value, "emoji": True}, "value": value}
    return {"type": "static_select", "selected_option": option}


def view_submission_payload(
    callback_id: str,
    values: Mapping[str, Mapping[str, JSON]],
    user_id: str,
    private_metadata: str = "",
    *,
    view_id: str = "V0MODAL",
    blocks: list[JSON] | None = None,
    title: str = "Request access",
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    trigger_id: str | None = None,
) -> JSON:
    """A modal submission; ``values`` is ``{block_id: {action_id: element_state}}``."""
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": _user(user_id, user_name, team_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "blocks": blocks or [],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": {block: dict(actions) for block, actions in values.items()}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "title": {"type": "plain_text", "text": title, "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": {"type": "plain_text", "text": "Cancel", "emoji": True},
            "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "external_id": "",
            "app_installed_team_id": team_id,
            "bot_id": BOT_ID,
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


view_submission_body = _body_of(
    view_submission_payload, _payload_form, "Form body (``payload=<json>``) of a modal submission."
)


# --------------------------------------------------------------------------- Events API


def event_callback_payload(
    event: JSON,
    event_id: str | None = None,
    *,
    event_time: int | None = None,
    team_id: str = TEAM_ID,
) -> JSON:
    """The Events API envelope around ``event`` (also the Socket Mode payload)."""
    now = time.time()
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": APP_ID,
        "event": {"event_ts": f"{now:.6f}", **event},
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(now) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + secrets.token_urlsafe(24),
    }


event_callback_body = _body_of(
    event_callback_payload, _json, "JSON body of an Events API delivery."
)


def url_verification_body(challenge: str) -> bytes:
    """JSON body of the Events API URL handshake."""
    payload = {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
    return _json(payload)
