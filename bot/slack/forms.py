"""The modals (request, deny, extend): pure builders, readers and validators.

A submission is validated before the listener acknowledges it, so mistakes appear
inline next to the field (``response_action: errors``). The rules are the policy's
and the lifecycle's: ``resolve_request`` reports problems by field, which are only
mapped to block ids here. Only the policy is consulted (never the network): well inside 3 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.durations import DurationError, format_duration, parse_duration
from bot.extension_rules import check_extension_rules
from bot.lifecycle import ExtensionRejected, new_expiry, room_to_extend
from bot.models import Grant
from bot.policy import (
    MAX_REASON_LENGTH,
    AccessRequestSpec,
    Policy,
    RequestField,
    RequestRejected,
    reason_optional,
    requestable_clusters,
    resolve_request,
    roles_on,
)
from bot.slack import ids, text
from bot.slack.blocks import PERMISSIONS_CHECKING, Permissions, allowance_blocks, context, section
from bot.slack.form_kit import (
    grant_from_metadata,
    metadata,
    modal,
    option,
    read_text,
    text_input,
)
from bot.slack.schedule import read_start, start_input
from bot.slack.text import JSON, md, plain

__all__ = [
    "RequestForm",
    "deny_modal",
    "extend_modal",
    "grant_from_metadata",
    "read_request_form",
    "read_text",
    "request_modal",
    "requestable_clusters",
    "roles_on",
    "validate_extension",
    "validate_request_form",
]

NOT_A_DURATION = "Use a duration like 30m, 2h, 1d or 1h30m."
OPTIONS_LIMIT = 100


# -- the request modal -----------------------------------------------------------------


def _role_text(policy: Policy, name: str) -> str:
    role = policy.roles[name]
    scope = "namespace" if role.scope == "namespace" else "cluster-wide"
    approval = "no approval" if role.approvals == 0 else f"{role.approvals} approval(s)"
    return f"{name} — {scope}, up to {format_duration(role.max_duration)}, {approval}"


def role_block_id(cluster: str) -> str:
    # A new block id per cluster makes Slack drop a role chosen for another cluster.
    return f"{ids.ROLE_BLOCK_PREFIX}-{cluster}"


def request_modal(
    policy: Policy,
    *,
    cluster: str | None = None,
    role: str | None = None,
    metadata: str = "",
    permissions: Permissions = PERMISSIONS_CHECKING,
) -> JSON:
    """The ``/access`` form; ``cluster`` picks whose roles are offered (default the first).

    Once ``role`` is chosen, the form shows what its ClusterRole allows on the
    cluster (``permissions``; PERMISSIONS_CHECKING says they are being read).
    """
    clusters = requestable_clusters(policy)
    chosen = cluster if cluster in clusters else clusters[0]
    roles = roles_on(policy, chosen)
    namespaced = [r for r in roles if policy.roles[r].scope == "namespace"]
    cluster_select: JSON = {
        "type": "static_select",
        "action_id": ids.MODAL_CLUSTER,
        "options": [option(c, c) for c in clusters[:OPTIONS_LIMIT]],
        "initial_option": option(chosen, chosen),
    }
    role_select: JSON = {
        "type": "static_select",
        "action_id": ids.MODAL_ROLE,
        "placeholder": plain("Pick a role"),
        "options": [option(_role_text(policy, r), r) for r in roles[:OPTIONS_LIMIT]],
    }
    if role in roles:
        role_select["initial_option"] = option(_role_text(policy, role), role)
    ns_hint = "; ".join(f"{r}: {', '.join(policy.roles[r].namespaces)}" for r in namespaced)
    maxima = ", ".join(f"{r} {format_duration(policy.roles[r].max_duration)}" for r in roles)
    blocks: list[JSON] = [
        {
            "type": "input",
            "block_id": ids.CLUSTER_BLOCK,
            "dispatch_action": True,
            "label": plain("Cluster"),
            "element": cluster_select,
        },
        {
            "type": "input",
            "block_id": role_block_id(chosen),
            "dispatch_action": True,
            "label": plain("Role"),
            "element": role_select,
        },
        *_permission_blocks(policy, chosen, role if role in roles else None, permissions),
        text_input(
            ids.NAMESPACE_BLOCK,
            "Namespace",
            hint=(f"Allowed namespaces — {ns_hint}. " if ns_hint else "")
            + "Leave empty for a cluster-wide role.",
            optional=True,
            max_length=63,
        ),
        text_input(
            ids.DURATION_BLOCK,
            "Duration",
            hint=f"Like 30m, 2h, 1h30m. Maximum: {maxima}.",
            initial=format_duration(policy.defaults.duration),
            max_length=20,
        ),
        start_input(policy),
        text_input(
            ids.REASON_BLOCK,
            "Reason",
            hint="What you are going to do; approvers and the audit log see it.",
            multiline=True,
            optional=reason_optional(policy),  # resolve_request decides per role
            max_length=MAX_REASON_LENGTH,
        ),
    ]
    return modal(ids.REQUEST_MODAL, "Request access", "Request", blocks, metadata)


def _permission_blocks(
    policy: Policy, cluster: str, role: str | None, permissions: Permissions
) -> list[JSON]:
    if role is None:
        return []
    config = policy.roles[role]
    blocks = allowance_blocks(
        permissions,
        cluster_role=config.cluster_role,
        cluster=cluster,
        namespaced=config.scope == "namespace",
        file_place=" (run /access roles to get it)",
    )
    # Block ids tied to role and cluster, so Slack never keeps a stale one around.
    for n, block in enumerate(blocks):
        block["block_id"] = f"{ids.PERMISSIONS_BLOCK}-{cluster}-{role}-{n}"[:255]
    return blocks


@dataclass(frozen=True)
class RequestForm:
    """What the request modal held when submitted (None: left empty)."""

    cluster: str | None
    role: str | None
    role_block: str
    namespace: str | None
    duration: str | None
    reason: str | None
    start: datetime | None = None  # the start field (bot.slack.schedule); None: at approval


def read_request_form(values: dict[str, Any]) -> RequestForm:
    """Read ``view.state.values`` of a submitted request modal."""
    role_block = next(
        (b for b in values if b.startswith(ids.ROLE_BLOCK_PREFIX)), ids.ROLE_BLOCK_PREFIX
    )
    return RequestForm(
        cluster=read_text(values, ids.CLUSTER_BLOCK),
        role=read_text(values, role_block),
        role_block=role_block,
        namespace=read_text(values, ids.NAMESPACE_BLOCK),
        duration=read_text(values, ids.DURATION_BLOCK),
        reason=read_text(values, ids.REASON_BLOCK),
        start=read_start(values),
    )


def _parsed_duration(typed: str | None) -> tuple[timedelta | None, str | None]:
    """The duration typed (None: left empty, the policy default), or why it is unreadable."""
    if typed is None:
        return None, None
    try:
        return parse_duration(typed), None
    except DurationError:
        # Not echoing the input: error texts are shown however Slack renders them.
        return None, NOT_A_DURATION


def _field_blocks(form: RequestForm) -> dict[RequestField, str]:
    """The block id showing each request field (the role's block id varies by cluster)."""
    return {
        "role": form.role_block,
        "cluster": ids.CLUSTER_BLOCK,
        "namespace": ids.NAMESPACE_BLOCK,
        "duration": ids.DURATION_BLOCK,
        "reason": ids.REASON_BLOCK,
        "start": ids.START_BLOCK,
    }


def validate_request_form(
    policy: Policy, form: RequestForm, requester: str
) -> tuple[AccessRequestSpec | None, dict[str, str]]:
    """The request the form describes, or errors keyed by block id for Slack to show.

    Only what the form itself must say is checked here (a select left empty, a
    duration that does not parse); every rule of the policy is
    ``resolve_request``'s, whose problems are shown beside their fields.
    """
    blocks = _field_blocks(form)
    errors: dict[str, str] = {}
    if form.cluster is None:
        errors[blocks["cluster"]] = "Pick a cluster."
    if form.role is None:
        errors[blocks["role"]] = "Pick a role."
    duration, unreadable = _parsed_duration(form.duration)
    if unreadable is not None:
        errors[blocks["duration"]] = unreadable
    spec = AccessRequestSpec(
        requester=requester,
        role=form.role or "",
        cluster=form.cluster,
        namespace=form.namespace,
        duration=duration,
        reason=form.reason or "",
    )
    try:
        resolve_request(policy, spec)
    except RequestRejected as exc:
        for field, problem in exc.problems.items():
            errors.setdefault(blocks[field], problem)
        if not errors:  # a rejection about no one field: show it on the role
            errors[blocks["role"]] = str(exc)
    return (None, errors) if errors else (spec, {})


# -- deny and extend -----------------------------------------------------------------------


def deny_modal(grant: Grant) -> JSON:
    """Asks the approver why; the reason goes to the requester and the audit log."""
    where = text.code(grant.cluster) + (
        f" namespace {text.code(grant.namespace)}" if grant.namespace else ""
    )
    who, role = text.mention(grant.requester), text.escape(grant.role)
    blocks: list[JSON] = [
        section(md(f"Deny {who}'s request for *{role}* on {where}?")),
        context(md("*Their reason*")),
        section(plain(grant.reason)),
        text_input(
            ids.REASON_BLOCK,
            "Why are you denying it?",
            hint="The requester sees this.",
            multiline=True,
            max_length=MAX_REASON_LENGTH,
        ),
    ]
    return modal(ids.DENY_MODAL, "Deny request", "Deny", blocks, metadata(grant=grant.id))


def extension_room(grant: Grant, policy: Policy, now: datetime) -> timedelta:
    """How much longer the grant may be extended right now (``bot.lifecycle.room_to_extend``)."""
    if grant.expires_at is None or grant.role not in policy.roles:
        return timedelta(0)
    return room_to_extend(grant.expires_at, now, policy.roles[grant.role].max_duration)


def extend_modal(grant: Grant, policy: Policy, now: datetime) -> JSON:
    assert grant.expires_at is not None
    room = extension_room(grant, policy, now)
    suggestion = min(timedelta(hours=1), room) if room >= timedelta(minutes=1) else room
    blocks: list[JSON] = [
        section(
            md(
                f"*{text.escape(grant.role)}* on {text.code(grant.cluster)} "
                f"expires {text.slack_date(grant.expires_at)} "
                f"(in {text.time_left(grant.expires_at, now)}). You can add up to "
                f"{format_duration(room)} now."
            )
        ),
        text_input(
            ids.DURATION_BLOCK,
            "Extend by",
            hint="Like 30m or 1h. Roles that need approval ask the approvers again.",
            initial=format_duration(suggestion) if suggestion > timedelta(0) else None,
            max_length=20,
        ),
    ]
    return modal(ids.EXTEND_MODAL, "Extend access", "Extend", blocks, metadata(grant=grant.id))


def validate_extension(
    grant: Grant, policy: Policy, typed: str | None, now: datetime
) -> tuple[timedelta | None, str | None]:
    """The extension asked for, or the reason it cannot be had."""
    if typed is None:
        return None, "Say by how much, like 30m or 1h."
    try:
        by = parse_duration(typed)
    except DurationError:
        return None, NOT_A_DURATION
    if grant.expires_at is None or grant.role not in policy.roles:
        return None, "This grant is not active."
    try:
        check_extension_rules(grant, policy.roles[grant.role], grant.role, now)
        new_expiry(grant.expires_at, by, now, policy.roles[grant.role].max_duration)
    except ExtensionRejected as exc:
        return None, str(exc).capitalize() + "."
    return by, None
