"""Prometheus metrics: the governance numbers and the bot's own health.

Where each number comes from, and so what it means with several replicas:

* Counters and histograms of *events* (requests decided, privilege-seconds
  granted, decision times, ...) are fed by the store's after-commit hook
  (``Store.on_change``), which runs once, in the replica whose transaction
  committed the change. Each replica counts what it did; Prometheus users
  ``sum()`` over replicas. A replay or a stale click commits nothing and so
  counts nothing. (A replica that dies between its commit and the hook loses
  that one increment: counters are telemetry, the audit stream is the record.)
* The gauge of *shared state* (``accessbot_active_grants``) is not kept in
  process memory: every scrape reads it from Redis's state index, so it is
  right after restarts and identical on every replica. Aggregate it with
  ``max by (cluster, role)``, never ``sum``.

Label values are ids of clusters, roles, outcomes, states and API methods
only: never users, reasons or anything that could carry a secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.audit import new_steps
from bot.lifecycle import State
from bot.models import Grant

if TYPE_CHECKING:
    from bot.policy import Policy
    from bot.store import Store

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
_VERIFY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
# A human decision takes seconds to days; the last bucket is the default pending TTL.
_DECISION_BUCKETS = (1, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)
# Reading the active grants must never hang a scrape (Prometheus times out at 5 s
# in the chart's ServiceMonitor); past this the gauge is left out of that scrape.
ACTIVE_READ_TIMEOUT = 2.0

# How a request ended its wait. ``failed``: it could not even be decided
# (pending -> failed); ``auto_approved``: the policy needs no approver.
OUTCOMES = ("auto_approved", "approved", "denied", "timed_out", "cancelled", "failed")
_OUTCOME_OF = {
    State.APPROVED: "approved",
    State.DENIED: "denied",
    State.TIMED_OUT: "timed_out",
    State.CANCELLED: "cancelled",
    State.FAILED: "failed",
}
_DECISIONS = frozenset({"auto_approved", "approved", "denied"})
BREAK_GLASS_OUTCOMES = ("ratified", "revoked")


def break_glass_outcome(before: Grant, after: Grant) -> str | None:
    """How a committed change settled a break-glass grant, if it did: ``ratified`` (the
    last ratification needed came), ``revoked`` (it ended unratified); else None."""
    glass, was = after.break_glass, before.break_glass
    if glass is None:
        return None
    if glass.ratified_at is not None and (was is None or was.ratified_at is None):
        return "ratified"
    if glass.ratified_at is None and after.ended and not before.ended:
        return "revoked"
    return None


class _ActiveGrants(Collector):
    """``accessbot_active_grants`` from the last read of the store (see ``Metrics.scrape``)."""

    def __init__(self) -> None:
        self.known: set[tuple[str, str]] = set()
        # None: the last read failed, so no value is better than a stale one.
        self.counts: dict[tuple[str, str], int] | None = {}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "accessbot_active_grants",
            "Grants active now, read from the shared store at scrape time "
            "(the same on every replica: aggregate with max, not sum)",
            labels=["cluster", "role"],
        )
        if self.counts is not None:
            for cluster, role in sorted(self.known | set(self.counts)):
                family.add_metric([cluster, role], self.counts.get((cluster, role), 0))
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.store: Store | None = None
        r = self.registry
        self.submitted = Counter(
            "accessbot_requests_submitted", "Requests stored (kind: access or extend)",
            ["kind"], registry=r,
        )  # fmt: skip
        self.requests = Counter(
            "accessbot_requests", "Requests by how their wait for a decision ended "
            "(auto_approved, approved, denied, timed_out, cancelled, failed)",
            ["kind", "outcome"], registry=r,
        )  # fmt: skip
        self.decision_time = Histogram(
            "accessbot_request_decision_seconds",
            "Seconds from request to decision (outcome: auto_approved, approved, denied)",
            ["kind", "outcome"], registry=r, buckets=_DECISION_BUCKETS,
        )  # fmt: skip
        self.privilege_seconds = Counter(
            "accessbot_privilege_seconds_granted",
            "Seconds of access granted: expiry minus activation when a grant becomes "
            "active, plus the time each extension adds (granted, not used: an early "
            "revocation takes nothing back)",
            ["cluster", "role"], registry=r,
        )  # fmt: skip
        self.transitions = Counter(
            "accessbot_grant_transitions",
            "Access grants entering a state (provisioning, active, expired, revoked, failed...)",
            ["state"], registry=r,
        )  # fmt: skip
        self.provisioning = Histogram(
            "accessbot_provisioning_seconds", "Approval to active (objects, token, delivery)",
            registry=r, buckets=_LAG_BUCKETS,
        )  # fmt: skip
        self.revocation_lag = Histogram(
            "accessbot_revocation_lag_seconds", "Expiry time to the expired state",
            registry=r, buckets=_LAG_BUCKETS,
        )  # fmt: skip
        self.verification = Histogram(
            "accessbot_revocation_verification_seconds",
            "Seconds from a grant's end (expired/revoked/failed) until the cluster was "
            "checked for its objects; once per receipt (failed, then verified)",
            ["cluster"], registry=r, buckets=_VERIFY_BUCKETS,
        )  # fmt: skip
        self.verification_failures = Counter(
            "accessbot_revocation_verification_failures",
            "Revocation checks that could not confirm the grant's objects are gone",
            ["cluster"], registry=r,
        )  # fmt: skip
        self.active_read_errors = Counter(
            "accessbot_active_grants_read_errors",
            "Scrapes whose read of the active grants failed (the gauge is then absent)",
            registry=r,
        )  # fmt: skip
        self.scheduler_lag = Histogram(
            "accessbot_scheduler_lag_seconds", "Step due time to handler start", ["kind"],
            registry=r, buckets=_LAG_BUCKETS,
        )  # fmt: skip
        self.slack_errors = Counter(
            "accessbot_slack_api_errors", "Slack Web API errors", ["method", "error"], registry=r
        )
        self.receipts = Counter(
            "accessbot_revocation_receipts", "Revocation receipts by cluster and result "
            "(verified, failed: access not proven gone, an alert)", ["cluster", "result"],
            registry=r,
        )  # fmt: skip
        self.reconcile_actions = Counter(
            "accessbot_reconcile_actions", "Reconciler actions", ["action"], registry=r
        )
        self.break_glass = Counter(
            "accessbot_breakglass", "Break-glass grants by how they settled (ratified: "
            "ratified in time; revoked: ended unratified, at the deadline or before)",
            ["outcome"], registry=r,
        )  # fmt: skip
        for settled in BREAK_GLASS_OUTCOMES:
            self.break_glass.labels(settled)
        self._active = _ActiveGrants()
        r.register(self._active)
        for outcome in OUTCOMES:
            self.requests.labels("access", outcome)
        self.submitted.labels("access")

    def attach(self, store: Store, policy: Policy | None = None) -> None:
        """Feed from ``store``'s committed changes and read the active gauge from it.

        With ``policy``, every (cluster, role) it allows and every cluster start
        at 0, so a series exists before its first event (``rate()`` and
        "no grants" then read as 0 rather than as missing data).
        """
        self.store = store
        if self.on_change not in store.on_change:
            store.on_change.append(self.on_change)
        if policy is None:
            return
        for cluster in policy.clusters:
            self.verification_failures.labels(cluster)
        for role_name, role in policy.roles.items():
            for cluster in role.clusters or list(policy.clusters):
                self._active.known.add((cluster, role_name))
                self.privilege_seconds.labels(cluster, role_name)

    async def scrape(self) -> bytes:
        """The Prometheus text page, with the active grants read from the store now.

        Never raises for an unreachable store: the gauge is left out of this
        page and ``accessbot_active_grants_read_errors_total`` goes up.
        """
        if self.store is not None:
            try:
                grants = await asyncio.wait_for(
                    self.store.by_state(State.ACTIVE), ACTIVE_READ_TIMEOUT
                )
            except Exception as exc:  # whatever it was, the rest of the page still serves
                log.warning("metrics: cannot read active grants: %s", exc)
                self.active_read_errors.inc()
                self._active.counts = None
            else:
                self._active.counts = _count_active(grants)
        return self.render()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

    async def on_change(self, before: Grant, after: Grant) -> None:
        """Store hook: count each committed change once (``before is after`` when created)."""
        kind = after.kind
        for step in new_steps(before, after) if not after.is_new else ():
            if step.event in ("verified", "verification_failed"):
                self._receipt(after, step.at, ok=step.event == "verified")
        outcome = None if after.is_new else break_glass_outcome(before, after)
        if outcome is not None:
            self.break_glass.labels(outcome).inc()
        if after.is_new:
            self.submitted.labels(kind).inc()
            if after.state == State.APPROVED:
                self._decided(after, "auto_approved")
            return
        if before.state == after.state:
            self._extended(before, after)
            return
        if before.state == State.PENDING and after.state in _OUTCOME_OF:
            self._decided(after, _OUTCOME_OF[after.state])
        if kind != "access":
            return
        state, at = after.state, after.history[-1].at
        self.transitions.labels(str(state)).inc()
        if state == State.ACTIVE:
            approved = next((s.at for s in after.history if s.to_state == State.APPROVED), None)
            if approved is not None:
                self.provisioning.observe(_seconds(at - approved))
            if after.expires_at is not None:
                self.privilege_seconds.labels(after.cluster, after.role).inc(
                    _seconds(after.expires_at - at)
                )
        elif state == State.EXPIRED and after.expires_at is not None:
            self.revocation_lag.observe(_seconds(at - after.expires_at))

    def _receipt(self, grant: Grant, verified_at: datetime, *, ok: bool) -> None:
        self.receipts.labels(grant.cluster, "verified" if ok else "failed").inc()
        ended = next((s.at for s in reversed(grant.history) if s.event is None and s.to_state in
                      (State.REVOKED, State.EXPIRED, State.FAILED)), None)  # fmt: skip
        if ended is not None:
            self.observe_verification(_seconds(verified_at - ended), ok, grant.cluster)

    def _decided(self, grant: Grant, outcome: str) -> None:
        self.requests.labels(grant.kind, outcome).inc()
        if outcome in _DECISIONS:
            decided_at = grant.history[-1].at if grant.history else grant.created_at
            self.decision_time.labels(grant.kind, outcome).observe(
                _seconds(decided_at - grant.created_at)
            )

    def _extended(self, before: Grant, after: Grant) -> None:
        # An extension moves an active grant's expiry later; other same-state
        # updates (delivery records, approvals so far, facts) leave it alone.
        if (
            after.kind == "access"
            and after.state == State.ACTIVE
            and before.expires_at is not None
            and after.expires_at is not None
            and after.expires_at > before.expires_at
        ):
            self.privilege_seconds.labels(after.cluster, after.role).inc(
                _seconds(after.expires_at - before.expires_at)
            )

    def observe_verification(self, seconds: float, ok: bool, cluster: str) -> None:
        """Record one revocation receipt's check that an ended grant's objects are gone.

        ``seconds``: from the grant's end (its expired/revoked/failed transition)
        to the end of this check; ``ok``: the check confirmed nothing is left;
        ``cluster``: the policy's cluster name. Called once per recorded receipt
        (at most one failed, then the verified one) from the replica that recorded it.
        """
        self.verification.labels(cluster).observe(max(0.0, seconds))
        if not ok:
            self.verification_failures.labels(cluster).inc()

    def observe_lag(self, kind: str, seconds: float) -> None:
        self.scheduler_lag.labels(kind).observe(max(0.0, seconds))

    def slack_error(self, method: str, error: str) -> None:
        self.slack_errors.labels(method, error).inc()

    def reconciled(self, revoked: int, deferred: int, rescheduled: int) -> None:
        for action, n in (
            ("revoked", revoked),
            ("deferred", deferred),
            ("rescheduled", rescheduled),
        ):
            if n:
                self.reconcile_actions.labels(action).inc(n)


def _count_active(grants: Iterable[Grant]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for g in grants:
        # The index is read without a transaction: a grant that left "active"
        # between the two reads is skipped rather than counted.
        if g.kind == "access" and g.state == State.ACTIVE:
            counts[(g.cluster, g.role)] = counts.get((g.cluster, g.role), 0) + 1
    return counts


def _seconds(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds())
