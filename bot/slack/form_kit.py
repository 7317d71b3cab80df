"""What every modal is built from: the view, text inputs, options, metadata, and reading
a submitted value back (pure; Block Kit shapes from https://api.slack.com/reference/surfaces/views)."""

from __future__ import annotations

import json
from typing import Any

from bot.slack import ids
from bot.slack.text import JSON, MODAL_TITLE_LIMIT, OPTION_TEXT_LIMIT, plain

__all__ = [
    "HINT_LIMIT",
    "grant_from_metadata",
    "metadata",
    "modal",
    "option",
    "read_text",
    "text_input",
]

HINT_LIMIT = 2000


def modal(callback_id: str, title: str, submit: str, blocks: list[JSON], metadata: str) -> JSON:
    """A modal view; ``metadata`` travels back with the submission (``private_metadata``)."""
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, MODAL_TITLE_LIMIT),
        "submit": plain(submit, MODAL_TITLE_LIMIT),
        "close": plain("Cancel", MODAL_TITLE_LIMIT),
        "private_metadata": metadata,
        "blocks": blocks,
    }


def text_input(
    block_id: str,
    label: str,
    *,
    hint: str | None = None,
    initial: str | None = None,
    multiline: bool = False,
    optional: bool = False,
    max_length: int | None = None,
) -> JSON:
    """An input block with a plain-text input (action id ``ids.VALUE``)."""
    element: JSON = {"type": "plain_text_input", "action_id": ids.VALUE, "multiline": multiline}
    if initial:
        element["initial_value"] = initial
    if max_length is not None:
        element["max_length"] = max_length
    block: JSON = {
        "type": "input",
        "block_id": block_id,
        "label": plain(label),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = plain(hint, HINT_LIMIT)
    return block


def option(shown: str, value: str) -> JSON:
    """A select's option: ``shown`` to the user, ``value`` back to us."""
    return {"text": plain(shown, OPTION_TEXT_LIMIT), "value": value}


def metadata(**values: str) -> str:
    """Compact JSON of ``values`` for ``private_metadata``."""
    return json.dumps(values, separators=(",", ":"))


def grant_from_metadata(metadata: str) -> str:
    """The grant id a deny/extend modal was opened for ("" if unreadable)."""
    try:
        data = json.loads(metadata or "{}")
    except ValueError:
        return ""
    value = data.get("grant") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def _state_value(element: Any) -> str | None:
    if not isinstance(element, dict):
        return None
    option = element.get("selected_option")
    if isinstance(option, dict):
        value = option.get("value")
        return value if isinstance(value, str) else None
    value = element.get("value")
    return (value.strip() or None) if isinstance(value, str) else None


def read_text(values: dict[str, Any], block_id: str) -> str | None:
    """A text input's (or a select's) value from ``view.state.values`` (None when empty)."""
    actions = values.get(block_id)
    if not isinstance(actions, dict):
        return None
    for element in actions.values():
        return _state_value(element)
    return None
