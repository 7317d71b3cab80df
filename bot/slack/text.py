"""Safe text for Slack: escaping, clipping, mentions and localised dates.

Slack treats ``&``, ``<`` and ``>`` as control characters in every text object, so
anything a person typed (a reason, a namespace, a command) is escaped before it
is shown anywhere; otherwise ``<!channel>`` would ping a channel and
``<https://evil.example|click>`` would render as a disguised link. Escaping does
not stop mrkdwn emphasis (``*bold*``), so user text is only ever placed in
``plain_text`` objects, which Slack renders without any formatting; mrkdwn is
reserved for text we compose, with every interpolated value escaped.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.durations import format_duration

JSON = dict[str, Any]

# Slack's limits (https://docs.slack.dev/reference/block-kit/blocks).
SECTION_TEXT_LIMIT = 3000
FIELD_TEXT_LIMIT = 2000
HEADER_TEXT_LIMIT = 150
BUTTON_TEXT_LIMIT = 75
OPTION_TEXT_LIMIT = 75
MODAL_TITLE_LIMIT = 24
MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100
FALLBACK_TEXT_LIMIT = 3000  # ours: the notification text needs no more than this

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
ELLIPSIS = "…"


def escape(text: str) -> str:
    """Escape Slack's three control characters (and nothing else, as Slack asks)."""
    return "".join(_ESCAPES.get(c, c) for c in text)


def unescape(text: str) -> str:
    """Undo Slack's escaping of typed text (slash command ``text`` arrives escaped).

    ``&amp;`` goes last so that a typed ``&lt;`` (sent as ``&amp;lt;``) stays ``&lt;``.
    """
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def clip(text: str, limit: int) -> str:
    """``escape(text)`` cut to at most ``limit`` characters, never inside an entity."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    out: list[str] = []
    size = 0
    for c in text:
        piece = _ESCAPES.get(c, c)
        if size + len(piece) > limit - len(ELLIPSIS):
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + ELLIPSIS


def clip_raw(text: str, limit: int) -> str:
    """Cut already-safe text (ours) to ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def plain(text: str, limit: int = SECTION_TEXT_LIMIT) -> JSON:
    """A ``plain_text`` object: shown exactly as typed, no mrkdwn, no mentions."""
    return {"type": "plain_text", "text": clip(text, limit) or " ", "emoji": False}


def md(text: str, limit: int = SECTION_TEXT_LIMIT) -> JSON:
    """A ``mrkdwn`` object for text we composed (interpolations already escaped)."""
    return {"type": "mrkdwn", "text": clip_raw(text, limit) or " "}


def code(text: str) -> str:
    """Inline code around an escaped value; backticks would end the span, so drop them."""
    return "`" + escape(text.replace("`", "'")) + "`"


def mention(user_id: str) -> str:
    """``<@U…>`` for a real user ID; anything else (``accessbot``) as escaped text."""
    if _USER_ID.fullmatch(user_id):
        return f"<@{user_id}>"
    return escape(user_id)


def slack_date(at: datetime, layout: str = "{date_short_pretty} at {time}") -> str:
    """A date each reader sees in their own time zone; UTC text for old clients."""
    moment = at.astimezone(UTC)
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{layout}|{fallback}>"


def time_left(until: datetime, now: datetime) -> str:
    """Remaining time in whole minutes (``1h20m``), or ``less than a minute``."""
    seconds = int((until - now).total_seconds())
    if seconds < 60:
        return "less than a minute"
    return format_duration(timedelta(minutes=seconds // 60))
