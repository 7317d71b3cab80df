"""The dependencies object every use case shares, and the few helpers they all use.

One frozen :class:`Deps` is built by the composition root (:func:`bot.core.build_core`)
and handed to each use-case module of :mod:`bot.usecases`; changing a tunable means
building a new one (:class:`bot.workflow.Workflow` does that for the tests' seams).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from bot.errors import UnknownGrant
from bot.models import Grant, utcnow
from bot.policy import Policy
from bot.ports import Directory, Notifier
from bot.retry import Backoff
from bot.scheduler import Scheduler
from bot.store import Change, Store
from k8s.clients import ClusterRegistry

SYSTEM = "accessbot"  # the actor for changes nobody clicked

V = TypeVar("V")
# A pure decision on one record: its verdict, and the change it implies (None: write
# nothing), given who among the people involved is offboarded.
Rule = Callable[[Grant, frozenset[str]], tuple[V, Change | None]]


@dataclass(frozen=True)
class Deps:
    """What the use cases talk to, and how long they wait.

    :param policy: the policy in force; every decision reads it afresh.
    :param store: grant records and their due index (the agenda's next step of each),
      changed in one transaction.
    :param scheduler: the durable runner of due steps (expiry, cleanup, provisioning...).
    :param clusters: the Kubernetes clusters by policy name.
    :param notifier: Slack (or a test double): cards, DMs, kubeconfig files.
    :param directory: who is who: usergroups, handles, email look-ups.
    :param clock: the current time as an aware UTC ``datetime``; default
      :func:`bot.models.utcnow`. Tests pass a controllable clock.
    :param backoff: how cluster calls are retried; default ``Backoff()``
      (5 attempts, 0.5 s doubling to 8 s, full jitter).
    :param on_provision_step: test seam for crash drills, called with the name of
      each provisioning step just completed; default ``None``.
    :param delivery_claim_seconds: seconds a kubeconfig delivery claim holds off
      other attempts; default 60. About two scheduler leases: longer than a live
      attempt needs between claim and record, so a crash there costs a delay,
      never a second file.
    :param card_retry: how long after a pending request is created its safety-net
      step posts the approval card if none was recorded; default 30 s.
    :param cleanup_grace: how long after a grant ends its durable cleanup step
      waits, so it does not race the inline cleanup; default 30 s.
    :param record_patience_seconds: seconds that recording a delivered kubeconfig
      waits out a Redis blip before giving up (the file is already sent, so a
      retry must not send another); default 30.
    """

    policy: Policy
    store: Store
    scheduler: Scheduler
    clusters: ClusterRegistry
    notifier: Notifier
    directory: Directory
    clock: Callable[[], datetime] = utcnow
    backoff: Backoff = field(default_factory=Backoff)
    on_provision_step: Callable[[str], object] | None = None
    delivery_claim_seconds: float = 60.0
    card_retry: timedelta = timedelta(seconds=30)
    cleanup_grace: timedelta = timedelta(seconds=30)
    record_patience_seconds: float = 30.0

    async def grant(self, grant_id: str) -> Grant:
        """The stored grant; raises UnknownGrant when there is none with this id."""
        grant = await self.store.get(grant_id)
        if grant is None:
            raise UnknownGrant(f"no request or grant with id {grant_id!r}")
        return grant


async def rule_on(
    store: Store, grant_id: str, rule: Rule[V], *, also: Sequence[str] = ()
) -> tuple[V | None, Grant | None]:
    """Apply ``rule`` to the record in one store transaction (``Store.update_checked``).

    Returns the verdict of the run that committed (the store may run ``rule``
    several times under contention; each run sees the record afresh) and the
    record as committed, or None when nothing changed. The verdict is None when
    there is no such record. ``also``: more people whose offboarding ``rule`` is told.
    """
    verdicts: list[V] = []

    def decide(g: Grant, offboarded: frozenset[str]) -> Change | None:
        verdict, change = rule(g, offboarded)
        verdicts.append(verdict)
        return change

    updated = await store.update_checked(grant_id, decide, also=also)
    return (verdicts[-1] if verdicts else None), updated


def user_reason(exc: BaseException) -> str:
    """A failure reason a requester can read; never the raw exception repr."""
    return str(exc) or exc.__class__.__name__
