"""Reading Slack's payloads: who acted, on what, with which values. Pure functions."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncRespond

from bot.slack.blocks import Message
from bot.slack.text import unescape

JSON = dict[str, Any]


def ephemeral(message: Message) -> JSON:
    """``message`` as a reply only the person sees."""
    return {**message.as_kwargs(), "response_type": "ephemeral"}


def clicker(body: JSON) -> str:
    """The user ID of whoever clicked or submitted."""
    return str((body.get("user") or {}).get("id") or "")


def trigger(body: JSON) -> str:
    """The ``trigger_id`` that lets the app open a modal (valid for 3 s)."""
    return str(body.get("trigger_id") or "")


def action_value(action: JSON) -> str:
    """A button's ``value`` (our buttons carry the grant id)."""
    return str(action.get("value") or "")


def selected(action: JSON) -> str:
    """The value of the option chosen in a select menu."""
    return str((action.get("selected_option") or {}).get("value") or "")


def view_values(view: JSON) -> dict[str, Any]:
    """A modal's ``state.values`` (block id -> action id -> value)."""
    values = (view.get("state") or {}).get("values")
    return values if isinstance(values, dict) else {}


def responder(body: JSON, respond: AsyncRespond) -> AsyncRespond | None:
    """Bolt's ``respond`` when the payload has a response_url (App Home clicks do not)."""
    return respond if body.get("response_url") else None


def typed(command: JSON) -> str:
    """What the user typed: Slack escapes &, < and > in slash command text."""
    return unescape(str(command.get("text") or ""))


def strings(value: object) -> list[str]:
    """A list of IDs from an event field (anything else: none)."""
    return [str(v) for v in value] if isinstance(value, list) else []
