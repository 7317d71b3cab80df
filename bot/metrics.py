"""Prometheus metrics, fed by store change hooks and scheduler/Slack observers.

Label values are ids of clusters, roles, outcomes and API methods only: never
users, reasons or anything that could carry a secret.
"""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.audit import new_steps
from bot.lifecycle import State
from bot.models import Grant

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
_SLOW_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "accessbot_requests", "Access requests by how they ended or progressed",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.time_to_approval = Histogram(
            "accessbot_time_to_approval_seconds", "Request to approval", registry=r,
            buckets=_SLOW_BUCKETS,
        )  # fmt: skip
        self.active = Gauge(
            "accessbot_active_grants", "Active grants", ["cluster", "role"], registry=r
        )
        self.provisioning = Histogram(
            "accessbot_provisioning_seconds", "Approval to active (objects, token, delivery)",
            registry=r, buckets=_LAG_BUCKETS,
        )  # fmt: skip
        self.revocation_lag = Histogram(
            "accessbot_revocation_lag_seconds", "Expiry time to the expired state",
            registry=r, buckets=_LAG_BUCKETS,
        )  # fmt: skip
        self.scheduler_lag = Histogram(
            "accessbot_scheduler_lag_seconds", "Job due time to handler start", ["kind"],
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

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def set_active(self, grants: list[Grant]) -> None:
        """Initial gauge values from the store at start-up."""
        self.active.clear()
        for g in grants:
            self.active.labels(g.cluster, g.role).inc()

    async def on_change(self, before: Grant, after: Grant) -> None:
        """Store hook: count each committed transition once."""
        for step in new_steps(before, after) if not after.is_new else ():
            if step.event in ("verified", "verification_failed"):
                result = "verified" if step.event == "verified" else "failed"
                self.receipts.labels(after.cluster, result).inc()
        if after.kind != "access" or (before.state == after.state and not after.is_new):
            return
        state = after.state
        if after.is_new:
            self.requests.labels("submitted").inc()
            if state == State.APPROVED:
                self.requests.labels("auto_approved").inc()
            return
        self.requests.labels(str(state)).inc()
        if state == State.APPROVED:
            self.time_to_approval.observe(_seconds(after.history[-1].at - after.created_at))
        elif state == State.ACTIVE:
            self.active.labels(after.cluster, after.role).inc()
            approved = next((s.at for s in after.history if s.to_state == State.APPROVED), None)
            if approved is not None:
                self.provisioning.observe(_seconds(after.history[-1].at - approved))
        if before.state == State.ACTIVE:
            self.active.labels(after.cluster, after.role).dec()
        if state == State.EXPIRED and after.expires_at is not None:
            self.revocation_lag.observe(_seconds(after.history[-1].at - after.expires_at))

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


def _seconds(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds())
