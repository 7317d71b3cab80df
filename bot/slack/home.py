"""App Home bookkeeping: whether a click came from Home, and carrying that through a
modal it opens, so the Home is redrawn once the form is submitted (issue 15.7).

Slack's ``view_submission`` says nothing of where its modal was opened from, so the
deny and extend forms opened from Home carry ``"home": "1"`` in their
``private_metadata`` (a JSON object, see :mod:`bot.slack.forms`).
"""

from __future__ import annotations

import json
from typing import Any

JSON = dict[str, Any]

__all__ = ["clicked_in_home", "remember_home", "submitted_from_home"]


def clicked_in_home(body: JSON) -> bool:
    """Whether a ``block_actions`` payload came from a button on App Home."""
    container = body.get("view") or {}
    return isinstance(container, dict) and container.get("type") == "home"


def _metadata(view: JSON) -> JSON:
    try:
        data = json.loads(str(view.get("private_metadata") or "{}"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def remember_home(view: JSON, body: JSON) -> JSON:
    """``view`` (a modal about to open), marked as opened from Home when the click was."""
    if not clicked_in_home(body):
        return view
    metadata = {**_metadata(view), "home": "1"}
    return {**view, "private_metadata": json.dumps(metadata, separators=(",", ":"))}


def submitted_from_home(view: JSON) -> bool:
    """Whether a submitted modal was opened from a button on App Home."""
    return _metadata(view).get("home") == "1"
