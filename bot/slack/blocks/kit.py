"""Block Kit pieces: the message type, blocks and buttons, and the plain answers
(a mistake explained, a sentence) every other builder and the listeners use."""

from __future__ import annotations

from dataclasses import dataclass

from bot.slack.text import (
    BUTTON_TEXT_LIMIT,
    FALLBACK_TEXT_LIMIT,
    HEADER_TEXT_LIMIT,
    JSON,
    clip_raw,
    escape,
    md,
    plain,
)


@dataclass(frozen=True)
class Message:
    """A message: ``text`` is the notification fallback (safe mrkdwn), ``blocks`` the body."""

    text: str
    blocks: list[JSON]

    def as_kwargs(self) -> JSON:
        return {"text": clip_raw(self.text, FALLBACK_TEXT_LIMIT), "blocks": self.blocks}


# -- small pieces ----------------------------------------------------------------------


def section(text: JSON) -> JSON:
    return {"type": "section", "text": text}


def header(text: str) -> JSON:
    return {"type": "header", "text": plain(text, HEADER_TEXT_LIMIT)}


def context(*elements: JSON) -> JSON:
    return {"type": "context", "elements": list(elements)}


def divider() -> JSON:
    return {"type": "divider"}


def button(
    label: str, action_id: str, value: str, style: str | None = None, confirm: JSON | None = None
) -> JSON:
    element: JSON = {
        "type": "button",
        "text": plain(label, BUTTON_TEXT_LIMIT),
        "action_id": action_id,
        "value": value,
    }
    if style is not None:
        element["style"] = style
    if confirm is not None:
        element["confirm"] = confirm
    return element


def actions(*elements: JSON) -> JSON:
    return {"type": "actions", "elements": list(elements)}


def error_message(problem: str, usage: str | None = None) -> Message:
    """A mistake explained: the problem as typed (plain text), then the usage line."""
    blocks: list[JSON] = [section(plain(f"⚠️ {problem}"))]
    if usage:
        lines = "\n".join(escape(line) for line in usage.splitlines())
        blocks.append(context(md(f"Usage:\n```\n{lines}\n```")))
    return Message(escape(problem), blocks)


def info_message(text: str) -> Message:
    """A sentence that may include user text: plain_text, so nothing in it formats."""
    return Message(escape(text), [section(plain(text))])
