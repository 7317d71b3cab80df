"""Our own ports (Notifier, Directory) implemented for workflow tests.

These are test implementations of interfaces the workflow declares, not patches
of its collaborators: the Slack implementations are tested against the Slack
emulator separately.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

from bot.models import Grant, MessageRef
from bot.usecases.nudges import Nudge


@dataclass
class Delivery:
    grant_id: str
    filename: str
    content: bytes


@dataclass
class RecordingNotifier:
    """Records everything; optionally mirrors deliveries to files (for subprocesses)."""

    spool: Path | None = None
    cards: list[Grant] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    changes: list[tuple[Grant, Grant]] = field(default_factory=list)
    reminders: list[Grant] = field(default_factory=list)
    nudges: list[tuple[Grant, Nudge]] = field(default_factory=list)
    fail_cards: int = 0  # the next N post_card calls fail, as a dropped connection would
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    async def post_card(self, grant: Grant) -> MessageRef | None:
        if self.fail_cards:
            self.fail_cards -= 1
            raise OSError("connection reset while posting the card")
        self.cards.append(grant)
        return MessageRef(channel="C0APPROVALS", ts=f"{len(self.cards)}.000100")

    async def deliver_kubeconfig(self, grant: Grant, filename: str, content: bytes) -> str:
        self.deliveries.append(Delivery(grant.id, filename, content))
        if self.spool is not None:
            n = len(list(self.spool.glob("*.delivery")))
            record = {"grant_id": grant.id, "filename": filename, "content": content.decode()}
            (self.spool / f"{grant.id}-{n}.delivery").write_text(json.dumps(record))
        self._poke()
        return f"F{len(self.deliveries):08d}"

    async def grant_changed(self, before: Grant, after: Grant) -> None:
        self.changes.append((before, after))
        self._poke()

    async def remind(self, grant: Grant) -> None:
        self.reminders.append(grant)
        self._poke()

    async def nudge(self, grant: Grant, nudge: Nudge) -> None:
        self.nudges.append((grant, nudge))
        self._poke()

    def _poke(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def delivered_to(self, grant_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.grant_id == grant_id]


@dataclass
class StaticDirectory:
    groups: dict[str, set[str]] = field(default_factory=dict)  # handle -> members
    emails: dict[str, str] = field(default_factory=dict)  # email -> user id
    handles: dict[str, str] = field(default_factory=dict)  # user id -> handle

    async def groups_of(self, user_id: str) -> frozenset[str]:
        return frozenset(h for h, members in self.groups.items() if user_id in members)

    async def members_of(self, handle: str) -> frozenset[str]:
        return frozenset(self.groups.get(handle.removeprefix("@").lower(), ()))

    async def user_for_email(self, email: str) -> str | None:
        return self.emails.get(email.lower())

    async def handle_of(self, user_id: str) -> str:
        return self.handles.get(user_id, user_id.lower())

    async def user_exists(self, user_id: str) -> bool:
        known = set(self.handles) | set(self.emails.values())
        return user_id in known or any(user_id in m for m in self.groups.values())
