"""Who a nudge about a pending request names, and how long it says the request waited
(pure; :mod:`bot.usecases.nudges` posts them, :mod:`bot.agenda` says when)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bot.durations import format_duration

__all__ = ["Nudge", "NudgeKind", "Targets", "targets", "waited_text"]

NudgeKind = Literal["remind", "escalate"]


@dataclass(frozen=True)
class Targets:
    """Who a nudge names: ``users`` (user IDs) and ``groups`` (handles without "@",
    named as a whole); both empty when nobody but the requester is left."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def nobody(self) -> bool:
        return not self.users and not self.groups


@dataclass(frozen=True)
class Nudge:
    """One reminder or escalation about a pending request, for the notifier to post in
    the card's thread: ``kind``, ``who`` to name, how long the requester has ``waited``
    (created to ``at``)."""

    kind: NudgeKind
    who: Targets
    waited: timedelta
    at: datetime


def targets(
    users: Iterable[str],
    groups: Mapping[str, frozenset[str]],
    left_out: frozenset[str],
) -> Targets:
    """Pure: ``users`` and ``groups`` (handle -> members) without anyone in ``left_out``.

    A group none of whose members is left out is named as a group; any other group
    is replaced by its remaining members. A group whose members are unknown (empty)
    is not named: nobody can be sure it leaves the requester out.
    """
    named: dict[str, None] = dict.fromkeys(u for u in users if u not in left_out)
    whole: list[str] = []
    for handle, members in groups.items():
        if members and not members & left_out:
            whole.append(handle)
        else:
            named.update(dict.fromkeys(sorted(members - left_out)))
    in_groups = frozenset().union(*(groups[h] for h in whole)) if whole else frozenset()
    return Targets(tuple(u for u in named if u not in in_groups), tuple(whole))


def waited_text(span: timedelta) -> str:
    """How long someone has waited, in whole minutes and at least one: ``25m``, ``1h5m``."""
    return format_duration(
        max(timedelta(minutes=1), timedelta(minutes=int(span.total_seconds()) // 60))
    )
