"""Audit entries: one per state change, with no secrets in them by construction.

An entry is built only from a grant's public fields and the step taken, so a
token cannot reach the audit stream, the log or the audit channel: there is
no field that could carry it.
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from bot.models import Grant, Receipt, Step

log = logging.getLogger("accessbot.audit")


def audit_entry(grant: Grant, step: Step) -> dict[str, str]:
    """Flat string fields, ready for XADD and for a structured log line."""
    return {
        "grant_id": grant.id,
        "kind": grant.kind,
        "event": step.event or str(step.to_state),
        "from": str(step.from_state),
        "actor": step.actor,
        "at": step.at.isoformat(),
        "requester": grant.requester,
        "cluster": grant.cluster,
        "role": grant.role,
        "namespace": grant.namespace or "",
        "reason": step.reason,
    }


# Said in every receipt: the time verified is the bound, not the instant access ended.
CACHE_CAVEAT = (
    "The apiserver may honour an already-authenticated token for up to about 10 s after "
    "its ServiceAccount is gone (its token cache), so the verification time is the "
    "honest bound."
)


def receipt_summary(grant: Grant, receipt: Receipt) -> str:
    """The receipt as one line for the audit stream: result, time, every check, the caveat."""
    result = "verified" if receipt.verified else "FAILED"
    at = receipt.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    checks = "; ".join(receipt.checks) or "no checks"
    return f"access on {grant.cluster} gone: {result} at {at} ({checks}). {CACHE_CAVEAT}"


def request_entry(grant: Grant) -> dict[str, str]:
    """The audit entry of a new record: who asked for what (its steps follow); a
    scheduled request also says when it starts (``starts_at``)."""
    scheduled = {} if grant.starts_at is None else {"starts_at": grant.starts_at.isoformat()}
    return {
        **scheduled,
        "grant_id": grant.id,
        "kind": grant.kind,
        "event": "requested",
        "from": "",
        "actor": grant.requester,
        "at": grant.created_at.isoformat(),
        "requester": grant.requester,
        "cluster": grant.cluster,
        "role": grant.role,
        "namespace": grant.namespace or "",
        "reason": grant.reason,
    }


def refusal_entry(
    actor: str, action: str, grant: Grant | None, why: str, at: str
) -> dict[str, str]:
    """The audit entry of an attempt the policy refused; nothing changed."""
    return {
        "grant_id": grant.id if grant else "",
        "kind": grant.kind if grant else "",
        "event": "refused",
        "from": str(grant.state) if grant else "",
        "actor": actor,
        "at": at,
        "requester": grant.requester if grant else "",
        "cluster": grant.cluster if grant else "",
        "role": grant.role if grant else "",
        "namespace": (grant.namespace or "") if grant else "",
        "reason": f"{action}: {why}",
    }


def new_steps(before: Grant | None, after: Grant) -> tuple[Step, ...]:
    done = len(before.history) if before else 0
    return after.history[done:]


def log_entry(entry: dict[str, Any]) -> None:
    log.info(
        "grant %s %s -> %s by %s",
        entry["grant_id"] or "-",
        entry["from"] or "-",
        entry["event"],
        entry["actor"],
        extra={"audit": entry},
    )
