"""Lists of grants: ``/access list`` and App Home."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.lifecycle import State
from bot.models import Grant
from bot.slack import ids
from bot.slack.blocks.grants import decision_buttons, grant_buttons, grant_line
from bot.slack.blocks.kit import Message, actions, button, context, divider, header, section
from bot.slack.text import JSON, MESSAGE_BLOCK_LIMIT, VIEW_BLOCK_LIMIT, md, mention, plain


def grant_list_message(grants: Sequence[Grant], now: datetime, *, everyone: bool) -> Message:
    """``/access list``: one line per grant, newest last, within the message block limit."""
    title = "All live grants and pending requests" if everyone else "Your grants and requests"
    if not grants:
        text = (
            "Nobody holds access or waits for it."
            if everyone
            else "You have no grants or pending requests."
        )
        return Message(text, [section(md(text))])
    blocks: list[JSON] = [header(title)]
    budget = MESSAGE_BLOCK_LIMIT - 2
    for grant in grants[:budget]:
        owner = f" · {mention(grant.requester)}" if everyone else ""
        blocks.append(section(md(grant_line(grant, now) + owner)))
    if len(grants) > budget:
        blocks.append(context(md(f"…and {len(grants) - budget} more")))
    return Message(f"{title}: {len(grants)}", blocks)


@dataclass(frozen=True)
class HomeData:
    """What App Home lists: ``mine``, the user's live and pending grants (oldest first),
    and ``awaiting``, the requests waiting on their decision."""

    mine: Sequence[Grant]
    awaiting: Sequence[Grant]


def _home_items(title: str, empty: str, items: Iterable[list[JSON]], budget: int) -> list[JSON]:
    blocks: list[JSON] = [header(title)]
    shown = 0
    rest = list(items)
    for item in rest:
        if len(blocks) + len(item) > budget:
            break
        blocks += item
        shown += 1
    if not rest:
        blocks.append(context(md(empty)))
    elif shown < len(rest):
        blocks.append(context(md(f"…and {len(rest) - shown} more: see `/access list`")))
    return blocks


def home_view(data: HomeData, now: datetime) -> JSON:
    """App Home: my access, my pending requests, requests waiting on me, Request access."""
    live = [
        g
        for g in data.mine
        if g.kind == "access" and g.state in (State.APPROVED, State.PROVISIONING, State.ACTIVE)
    ]
    pending = [g for g in data.mine if g.state == State.PENDING]
    top = [
        header("AccessBot"),
        section(
            md(
                "Time-limited, approved Kubernetes access. "
                "Everything here also works with `/access`."
            )
        ),
        actions(button("Request access", ids.OPEN_MODAL, "home", "primary")),
        divider(),
    ]
    # Share the 100-block budget between the three lists, leaving room for headers.
    third = (VIEW_BLOCK_LIMIT - len(top) - 3) // 3
    blocks = top + _home_items(
        "Your access",
        "No active access.",
        (
            [section(md(grant_line(g, now)))]
            + ([grant_buttons(g)] if g.state == State.ACTIVE else [])
            for g in live
        ),
        third,
    )
    blocks += _home_items(
        "Your pending requests",
        "Nothing pending.",
        (
            [section(md(grant_line(g, now))), actions(button("Cancel request", ids.REVOKE, g.id))]
            for g in pending
        ),
        third,
    )
    blocks += _home_items(
        "Waiting for your decision",
        "Nothing waits for you.",
        (
            [
                section(md(f"{grant_line(g, now)} · from {mention(g.requester)}")),
                section(plain(g.reason)),
                decision_buttons(g),
            ]
            for g in data.awaiting
        ),
        third,
    )
    return {"type": "home", "blocks": blocks}
