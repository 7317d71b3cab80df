"""How a grant reads in every message: where it is, what it is, its buttons and the
sentences several messages share (approvers, an insecure cluster, a capped token)."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.durations import format_duration
from bot.lifecycle import State
from bot.models import Grant, Step
from bot.policy import Policy, approvers_of
from bot.slack import ids
from bot.slack.blocks.kit import actions, button, context, section
from bot.slack.blocks.schedule import start_note
from bot.slack.text import (
    FIELD_TEXT_LIMIT,
    JSON,
    code,
    escape,
    md,
    mention,
    plain,
    slack_date,
    time_left,
)


def _revoke_confirm(grant: Grant) -> JSON:
    return {
        "title": plain("Revoke access?"),
        "text": plain(f"Your {grant.role} access on {where_plain(grant)} ends now."),
        "confirm": plain("Revoke"),
        "deny": plain("Keep it"),
        "style": "danger",
    }


def grant_buttons(grant: Grant) -> JSON:
    """Revoke now / Extend for an active grant (the DM, the reminder, App Home)."""
    return actions(
        button("Revoke now", ids.REVOKE, grant.id, "danger", _revoke_confirm(grant)),
        button("Extend", ids.EXTEND, grant.id),
    )


def decision_buttons(grant: Grant) -> JSON:
    return actions(
        button("Approve", ids.APPROVE, grant.id, "primary"),
        button("Approve with changes", ids.NARROW, grant.id),
        button("Deny", ids.DENY, grant.id, "danger"),
    )


def where_plain(grant: Grant) -> str:
    """``a/team-a`` or ``a (cluster-wide)``: raw, for plain_text."""
    return (
        f"{grant.cluster}/{grant.namespace}"
        if grant.namespace
        else f"{grant.cluster} (cluster-wide)"
    )


def where_md(grant: Grant) -> str:
    if grant.namespace:
        return f"{code(grant.cluster)} namespace {code(grant.namespace)}"
    return f"{code(grant.cluster)} (cluster-wide)"


def summary_md(grant: Grant) -> str:
    """``*edit* on `a` namespace `team-a``` in our own mrkdwn."""
    return f"*{escape(grant.role)}* on {where_md(grant)}"


def what_it_is(grant: Grant) -> str:
    return "extension request" if grant.kind == "extend" else "request"


def last_move(grant: Grant) -> Step | None:
    # The last state change: noted events (an approval, an extension, a receipt)
    # come after it but say nothing about who moved the grant to where it is.
    moves = [s for s in grant.history if s.event is None]
    return moves[-1] if moves else None


def reason_blocks(label: str, text: str) -> list[JSON]:
    """A bold label (ours) and the user's text as plain_text, never formatted."""
    if not text.strip():
        return []
    return [context(md(f"*{label}*")), section(plain(text))]


def approvers_md(policy: Policy, role: str) -> str:
    users, groups = approvers_of(policy, role, include_admins=False)
    names = [mention(u) for u in sorted(users)] + [escape(f"@{g}") for g in sorted(groups)]
    who = ", ".join(names) if names else "AccessBot admins"
    return f"Approvers: {who}" + (" (admins may approve too)" if names else "")


def insecure_md(grant: Grant) -> str:
    return (
        f":warning: Cluster {code(grant.cluster)} is trusted without TLS verification "
        "(`insecure-skip-tls-verify` in AccessBot's kubeconfig), and so is the issued "
        "kubeconfig: anyone on the network path can impersonate the API server and take "
        "the token. Ask an admin to configure the cluster's CA."
    )


def cap_md(grant: Grant) -> str:
    """Why the grant ends earlier than asked: the cluster's own token limit."""
    assert grant.token_cap_s is not None
    assert grant.expires_at is not None
    return (
        f":information_source: This cluster caps tokens at "
        f"{format_duration(timedelta(seconds=grant.token_cap_s))}, so your access ends "
        f"{slack_date(grant.expires_at)}, earlier than you asked for. Extend it (or request "
        "again) before then if you need more time."
    )


def grant_line(grant: Grant, now: datetime) -> str:
    """One line about a grant in a list: id, what, and when it ends or what it waits for."""
    line = f"{code(grant.id)} {summary_md(grant)}"
    if grant.kind == "extend":
        line += f" · extension of {code(grant.extends or '?')} by {format_duration(grant.duration)}"
    if grant.state == State.ACTIVE and grant.expires_at is not None:
        line += (
            f" · expires {slack_date(grant.expires_at)} ({time_left(grant.expires_at, now)} left)"
        )
    elif grant.state == State.PENDING:
        line += f" · waiting for {grant.tally.remaining} approval(s)"
    else:
        line += f" · {escape(str(grant.state))}"
    return line + (start_note(grant) if not grant.ended else "")


def card_fields(grant: Grant, *, who: str, duration: str, count: tuple[str, str]) -> list[JSON]:
    """The six fields of a card: ``who`` labels the requester, ``duration`` the
    duration's field, ``count`` is the last field's (label, text): approvals or
    ratifications so far."""
    scope = f"namespace {code(grant.namespace)}" if grant.namespace else "cluster-wide"
    role = f"{code(grant.role)} (ClusterRole {code(grant.cluster_role)})"
    return [
        md(f"*{label}*\n{value}", FIELD_TEXT_LIMIT)
        for label, value in (
            (who, mention(grant.requester)),
            ("Cluster", code(grant.cluster)),
            ("Role", role),
            ("Scope", scope),
            (duration, format_duration(grant.duration)),
            count,
        )
    ]
