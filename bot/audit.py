"""Audit entries: one per state change, with no secrets in them by construction.

An entry is built only from a grant's public fields and the step taken, so a
token cannot reach the audit stream, the log or the audit channel: there is
no field that could carry it.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.models import Grant, Step

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
