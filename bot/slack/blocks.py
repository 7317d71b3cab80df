"""Block Kit builders: pure functions from records to Slack messages and views.

Nothing here does I/O, so every message can be checked for Slack's limits and
for escaping in unit tests. User-supplied text (reasons, typed values) only
ever appears inside ``plain_text`` objects, escaped (see :mod:`bot.slack.text`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from bot.audit import CACHE_CAVEAT
from bot.durations import format_duration
from bot.lifecycle import State
from bot.models import Grant, Receipt, Step
from bot.policy import Policy, approvers_of
from bot.slack import ids
from bot.slack.commands import ACCESS_USAGE, K8S_USAGE
from bot.slack.text import (
    BUTTON_TEXT_LIMIT,
    FALLBACK_TEXT_LIMIT,
    FIELD_TEXT_LIMIT,
    HEADER_TEXT_LIMIT,
    JSON,
    MESSAGE_BLOCK_LIMIT,
    SECTION_TEXT_LIMIT,
    VIEW_BLOCK_LIMIT,
    clip_raw,
    code,
    escape,
    md,
    mention,
    plain,
    slack_date,
    time_left,
)
from k8s.rbac import BLOCKING_RISKS, CLUSTER_SCOPE, Allowance, flag_meaning, rules_text

__all__ = [
    "PERMISSIONS_CHECKING",
    "Message",
    "Permissions",
    "active_message",
    "allowance_blocks",
    "allowance_file",
    "allowance_file_name",
    "approval_card",
    "audit_message",
    "ended_dm",
    "error_message",
    "extended_message",
    "grant_list_message",
    "help_message",
    "home_view",
    "info_message",
    "receipt_dm",
    "receipt_message",
    "reminder_message",
    "report_messages",
    "requester_update",
    "roles_messages",
]


@dataclass(frozen=True)
class Message:
    """A message: ``text`` is the notification fallback (safe mrkdwn), ``blocks`` the body."""

    text: str
    blocks: list[JSON]

    def as_kwargs(self) -> JSON:
        return {"text": clip_raw(self.text, FALLBACK_TEXT_LIMIT), "blocks": self.blocks}


# -- small pieces ----------------------------------------------------------------------


def section(text: JSON) -> JSON:
    return {"type": "section", "text": text}


def header(text: str) -> JSON:
    return {"type": "header", "text": plain(text, HEADER_TEXT_LIMIT)}


def context(*elements: JSON) -> JSON:
    return {"type": "context", "elements": list(elements)}


def divider() -> JSON:
    return {"type": "divider"}


def button(
    label: str, action_id: str, value: str, style: str | None = None, confirm: JSON | None = None
) -> JSON:
    element: JSON = {
        "type": "button",
        "text": plain(label, BUTTON_TEXT_LIMIT),
        "action_id": action_id,
        "value": value,
    }
    if style is not None:
        element["style"] = style
    if confirm is not None:
        element["confirm"] = confirm
    return element


def actions(*elements: JSON) -> JSON:
    return {"type": "actions", "elements": list(elements)}


def _revoke_confirm(grant: Grant) -> JSON:
    return {
        "title": plain("Revoke access?"),
        "text": plain(f"Your {grant.role} access on {_where(grant)} ends now."),
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
        button("Deny", ids.DENY, grant.id, "danger"),
    )


def _where(grant: Grant) -> str:
    """``a/team-a`` or ``a (cluster-wide)``: raw, for plain_text."""
    return (
        f"{grant.cluster}/{grant.namespace}"
        if grant.namespace
        else f"{grant.cluster} (cluster-wide)"
    )


def _where_md(grant: Grant) -> str:
    if grant.namespace:
        return f"{code(grant.cluster)} namespace {code(grant.namespace)}"
    return f"{code(grant.cluster)} (cluster-wide)"


def _summary_md(grant: Grant) -> str:
    """``*edit* on `a` namespace `team-a``` in our own mrkdwn."""
    return f"*{escape(grant.role)}* on {_where_md(grant)}"


def _what(grant: Grant) -> str:
    return "extension request" if grant.kind == "extend" else "request"


def _last(grant: Grant) -> Step | None:
    # The last state change: noted events (an approval, an extension, a receipt)
    # come after it but say nothing about who moved the grant to where it is.
    moves = [s for s in grant.history if s.event is None]
    return moves[-1] if moves else None


def _reason_blocks(label: str, text: str) -> list[JSON]:
    """A bold label (ours) and the user's text as plain_text, never formatted."""
    if not text.strip():
        return []
    return [context(md(f"*{label}*")), section(plain(text))]


# -- approval card -----------------------------------------------------------------------


def _approvers_md(policy: Policy, role: str) -> str:
    users, groups = approvers_of(policy, role, include_admins=False)
    names = [mention(u) for u in sorted(users)] + [escape(f"@{g}") for g in sorted(groups)]
    who = ", ".join(names) if names else "AccessBot admins"
    return f"Approvers: {who}" + (" (admins may approve too)" if names else "")


def _card_fields(grant: Grant) -> list[JSON]:
    scope = f"namespace {code(grant.namespace)}" if grant.namespace else "cluster-wide"
    duration = format_duration(grant.duration)
    return [
        md(f"*Requester*\n{mention(grant.requester)}", FIELD_TEXT_LIMIT),
        md(f"*Cluster*\n{code(grant.cluster)}", FIELD_TEXT_LIMIT),
        md(
            f"*Role*\n{code(grant.role)} (ClusterRole {code(grant.cluster_role)})", FIELD_TEXT_LIMIT
        ),
        md(f"*Scope*\n{scope}", FIELD_TEXT_LIMIT),
        md(
            f"*{'Extend by' if grant.kind == 'extend' else 'Duration'}*\n{duration}",
            FIELD_TEXT_LIMIT,
        ),
        md(f"*Approvals*\n{_tally_md(grant)}", FIELD_TEXT_LIMIT),
    ]


def _tally_md(grant: Grant) -> str:
    given = len(grant.approvals)
    text = f"{given} of {grant.approvals_required}"
    if grant.approvals:
        text += ": " + ", ".join(mention(a) for a in grant.approvals)
    return text


def _card_status(grant: Grant) -> list[JSON]:
    step = _last(grant)
    by = mention(step.actor) if step else ""
    state = grant.state
    if state == State.PENDING:
        left = grant.tally.remaining
        return [section(md(f":hourglass_flowing_sand: Waiting for {left} more approval(s)"))]
    if state in (State.APPROVED, State.PROVISIONING, State.ACTIVE):
        approvers = ", ".join(mention(a) for a in grant.approvals) or by
        done = "extension applied" if grant.kind == "extend" else "access is being set up"
        if state == State.ACTIVE:
            done = "access is active"
        return [section(md(f":white_check_mark: Approved by {approvers}; {done}"))]
    texts = {
        State.DENIED: f":no_entry: Denied by {by}",
        State.CANCELLED: f":heavy_minus_sign: Cancelled by {by}",
        State.TIMED_OUT: ":alarm_clock: Timed out: nobody decided in time",
        State.REVOKED: f":lock: Approved, then revoked by {by}",
        State.EXPIRED: ":lock: Approved; the access has expired",
        State.FAILED: ":x: Failed",
        State.APPLIED: ":white_check_mark: Approved; extension applied",
    }
    blocks = [section(md(texts[state]))]
    if state in (State.DENIED, State.REVOKED, State.CANCELLED, State.FAILED) and step:
        blocks += _reason_blocks("Why", grant.failure or step.reason)
    return blocks


def _insecure_md(grant: Grant) -> str:
    return (
        f":warning: Cluster {code(grant.cluster)} is trusted without TLS verification "
        "(`insecure-skip-tls-verify` in AccessBot's kubeconfig), and so is the issued "
        "kubeconfig: anyone on the network path can impersonate the API server and take "
        "the token. Ask an admin to configure the cluster's CA."
    )


def _cap_md(grant: Grant) -> str:
    """Why the grant ends earlier than asked: the cluster's own token limit."""
    assert grant.token_cap_s is not None
    assert grant.expires_at is not None
    return (
        f":information_source: This cluster caps tokens at "
        f"{format_duration(timedelta(seconds=grant.token_cap_s))}, so your access ends "
        f"{slack_date(grant.expires_at)}, earlier than you asked for. Extend it (or request "
        "again) before then if you need more time."
    )


# -- what a role allows -------------------------------------------------------------------

# What the card shows about a role's permissions: the analysis, a problem reading
# it (plain words), or PERMISSIONS_CHECKING while it is still being read.
Permissions = Allowance | str | None
PERMISSIONS_CHECKING: Final = None
_BULLET_LINE = "• "
# Room the "and N more" note needs inside one section.
_MORE_ROOM = 200


def allowance_file_name(allowance: Allowance) -> str:
    """``permissions-edit-a.txt``: the file holding a role's full list."""
    return f"permissions-{allowance.cluster_role}-{allowance.cluster}.txt"


def allowance_file(allowance: Allowance) -> str:
    """The full list: the summary, every flag with its meaning, every rule."""
    scope = "in one namespace (RoleBinding)" if allowance.namespaced else "cluster-wide"
    parts = [
        f"ClusterRole {allowance.cluster_role} on cluster {allowance.cluster}, bound {scope}",
        "",
        "What it allows:",
        *(f"- {c}" for c in allowance.summary),
        "",
        "Flags:" if allowance.flags else "Flags: none",
        *(f"- {f}: {flag_meaning(f)}" for f in allowance.flags),
        "",
        "Rules (aggregated ClusterRoles resolved):",
        rules_text(allowance.rules),
    ]
    return "\n".join(parts) + "\n"


def _summary_lines(allowance: Allowance) -> tuple[str, bool]:
    """The summary as plain bullet lines within a section, and whether it was cut short.

    A clause too long for the room left is cut after a whole resource name.
    """
    room = SECTION_TEXT_LIMIT - _MORE_ROOM
    lines: list[str] = []
    size = 0
    for clause in allowance.summary:
        line = _BULLET_LINE + clause
        # Slack counts the escaped text.
        if size + len(escape(line)) + 1 <= room:
            lines.append(line)
            size += len(escape(line)) + 1
            continue
        cut = line
        while ", " in cut and size + len(escape(cut)) + 3 > room:
            cut = cut.rsplit(", ", 1)[0]
        if size + len(escape(cut)) + 3 <= room and cut != line:
            lines.append(cut + ", …")
        return "\n".join(lines), True
    return "\n".join(lines), False


def allowance_fits(allowance: Allowance) -> bool:
    """Whether the whole summary fits the blocks (else a file carries the full list)."""
    return not _summary_lines(allowance)[1]


def _flag_line(flag: str) -> str:
    if flag == CLUSTER_SCOPE:
        icon = ":globe_with_meridians:"
    elif flag in BLOCKING_RISKS:
        icon = ":rotating_light:"
    else:
        icon = ":warning:"
    return f"{icon} *{escape(flag)}*: {escape(flag_meaning(flag))}"


def allowance_blocks(
    permissions: Permissions,
    *,
    cluster_role: str,
    cluster: str,
    namespaced: bool,
    label: str = "*What this allows*",
    file_place: str = " (in this message's thread)",
) -> list[JSON]:
    """What a ClusterRole allows: every flag (dangerous ones first), then the summary.

    The summary quotes the cluster (resource names, ``resourceNames``), so it is
    ``plain_text``; the flags are ours. At most three blocks, each within
    Slack's 3,000 characters; a summary that does not fit ends with a note
    naming the file (``allowance_file_name``) that holds the full list.
    """
    scope = "in the namespace" if namespaced else "cluster-wide"
    title = f"{label} · ClusterRole {code(cluster_role)} on {code(cluster)}, {scope}"
    if permissions is PERMISSIONS_CHECKING:
        return [context(md(f"{title}\n:hourglass_flowing_sand: Permissions being checked…"))]
    if isinstance(permissions, str):
        return [
            context(
                md(f"{title}\n:grey_question: Permissions could not be checked: "),
                plain(permissions, FIELD_TEXT_LIMIT),
            )
        ]
    if not permissions.exists:
        return [
            section(
                md(
                    f"{title}\n:x: ClusterRole {code(cluster_role)} does not exist on "
                    f"{code(cluster)}: this grant would give nothing and will fail."
                )
            )
        ]
    text, cut = _summary_lines(permissions)
    if cut:
        text += (
            f"\n…cut short to fit Slack: the full list is in the file "
            f"{allowance_file_name(permissions)}{file_place}"
        )
    # Flags before the summary: what can outlive the grant is read first.
    flags = permissions.flags
    if flags:
        flag_block = section(md("\n".join(_flag_line(f) for f in flags)))
    else:
        flag_block = context(md(":white_check_mark: No risk flags"))
    return [section(md(title)), flag_block, section(plain(text))]


def approval_card(
    grant: Grant, policy: Policy, permissions: Permissions = PERMISSIONS_CHECKING
) -> Message:
    """The card in the approvals channel; updated in place, buttons only while pending.

    ``permissions`` is what the grant's ClusterRole allows (see ``allowance_blocks``).
    """
    title = "Extension request" if grant.kind == "extend" else "Access request"
    blocks: list[JSON] = [header(f"{title}: {grant.role} on {_where(grant)}")]
    if grant.kind == "extend" and grant.extends:
        blocks.append(section(md(f"Extends grant {code(grant.extends)}")))
    blocks.append({"type": "section", "fields": _card_fields(grant)})
    blocks += _reason_blocks("Reason", grant.reason)
    blocks += allowance_blocks(
        permissions,
        cluster_role=grant.cluster_role,
        cluster=grant.cluster,
        namespaced=grant.namespace is not None,
    )
    if grant.tls_insecure:
        blocks.append(section(md(_insecure_md(grant))))
    blocks.append(
        context(
            md(_approvers_md(policy, grant.role)),
            md(
                f"Request {code(grant.id)} · undecided requests close "
                f"{slack_date(grant.pending_until)}"
            ),
        )
    )
    blocks += _card_status(grant)
    if grant.state == State.PENDING:
        blocks.append(decision_buttons(grant))
    text = f"{title} from {mention(grant.requester)}: {_summary_md(grant)} ({grant.state})"
    return Message(text, blocks)


# -- /access roles --------------------------------------------------------------------------


def _role_label(policy: Policy, role: str) -> str:
    config = policy.roles[role]
    approvals = "no approval" if config.approvals == 0 else f"{config.approvals} approval(s)"
    where = (
        "namespaces " + ", ".join(code(n) for n in config.namespaces)
        if config.scope == "namespace"
        else "cluster-wide"
    )
    return f"*{escape(role)}* ({where}; up to {format_duration(config.max_duration)}; {approvals})"


def roles_messages(
    policy: Policy, cluster: str, entries: Sequence[tuple[str, Permissions]]
) -> list[Message]:
    """``/access roles``: per role on ``cluster``, what its ClusterRole allows.

    As many messages as Slack's 50 blocks per message need; a role's blocks are
    never split across messages.
    """
    title = f"Roles on {cluster}: what each allows"
    if not entries:
        text = f"No role is offered on cluster {code(cluster)}."
        return [Message(text, [section(md(text))])]
    messages: list[Message] = []
    blocks: list[JSON] = [header(title)]
    for role, permissions in entries:
        config = policy.roles[role]
        item = [
            divider(),
            *allowance_blocks(
                permissions,
                cluster_role=config.cluster_role,
                cluster=cluster,
                namespaced=config.scope == "namespace",
                label=_role_label(policy, role),
                file_place=" (in your DM with AccessBot)",
            ),
        ]
        if len(blocks) + len(item) > MESSAGE_BLOCK_LIMIT:
            messages.append(Message(escape(title), blocks))
            blocks = [context(plain(f"{title} (continued)"))]
        blocks += item
    messages.append(Message(escape(title), blocks))
    return messages


# -- messages to the requester --------------------------------------------------------------


def _usage_lines(grant: Grant) -> str:
    first = "kubectl get pods" if grant.namespace else "kubectl auth can-i --list"
    return f"```\nexport KUBECONFIG=~/Downloads/{escape(grant.kubeconfig_filename)}\n{first}\n```"


def active_message(grant: Grant, now: datetime) -> Message:
    """Access is live: how to use the file, when it ends, Revoke now / Extend."""
    assert grant.expires_at is not None
    until = slack_date(grant.expires_at)
    blocks = [
        header(f"Access granted: {grant.role} on {_where(grant)}"),
        section(
            md(
                f"Your kubeconfig {code(grant.kubeconfig_filename)} is in this conversation. "
                "Download it, then:\n" + _usage_lines(grant)
            )
        ),
        section(
            md(
                f"Expires {until} (in {time_left(grant.expires_at, now)}). "
                f"Grant {code(grant.id)}. Keep the file private: it holds your token."
            )
        ),
    ]
    if grant.token_cap_s is not None:
        blocks.append(section(md(_cap_md(grant))))
    if grant.tls_insecure:
        blocks.append(section(md(_insecure_md(grant))))
    blocks.append(grant_buttons(grant))
    text = f"Access granted: {_summary_md(grant)}, until {until}"
    return Message(text, blocks)


def extended_message(grant: Grant, now: datetime) -> Message:
    assert grant.expires_at is not None
    until = slack_date(grant.expires_at)
    text = (
        f"Your access {code(grant.id)} ({_summary_md(grant)}) was extended; it now expires "
        f"{until} (in {time_left(grant.expires_at, now)}). A fresh kubeconfig follows: "
        "use it instead of the old one, which stops working at the old expiry."
    )
    blocks = [section(md(text))]
    if grant.token_cap_s is not None:
        blocks.append(section(md(_cap_md(grant))))
    return Message(text, [*blocks, grant_buttons(grant)])


def reminder_message(grant: Grant, now: datetime) -> Message:
    assert grant.expires_at is not None
    text = (
        f":hourglass: Your access {code(grant.id)} ({_summary_md(grant)}) expires "
        f"{slack_date(grant.expires_at)} (in {time_left(grant.expires_at, now)})."
    )
    return Message(text, [section(md(text)), grant_buttons(grant)])


def _submitted(grant: Grant, policy: Policy) -> Message:
    what = _what(grant).capitalize()
    text = (
        f"{what} {code(grant.id)} for {_summary_md(grant)} "
        f"({format_duration(grant.duration)}) is waiting for "
        f"{grant.approvals_required} approval(s). {_approvers_md(policy, grant.role)}."
    )
    cancel = button("Cancel request", ids.REVOKE, grant.id)
    return Message(
        text, [section(md(text)), *_reason_blocks("Reason", grant.reason), actions(cancel)]
    )


def _state_text(grant: Grant, step: Step | None) -> str | None:
    """One sentence per state a requester wants to hear about (None: stay quiet)."""
    by = mention(step.actor) if step else "AccessBot"
    what = f"Your {_what(grant)} {code(grant.id)} for {_summary_md(grant)}"
    texts = {
        State.APPROVED: (
            f":white_check_mark: {what} was approved by {by}."
            + ("" if grant.kind == "extend" else " Preparing your kubeconfig…")
        ),
        State.DENIED: f":no_entry: {what} was denied by {by}.",
        State.CANCELLED: f"{what} was cancelled by {by}.",
        State.TIMED_OUT: f":alarm_clock: {what} timed out: nobody decided in time.",
        State.REVOKED: f":lock: {what} was revoked by {by}.",
        State.EXPIRED: f":lock: {what} has expired. Request it again if you still need it.",
        State.FAILED: f":x: {what} failed.",
    }
    return texts.get(grant.state)


def requester_update(before: Grant, after: Grant, policy: Policy, now: datetime) -> Message | None:
    """The DM for one committed change, or None when the requester needs no message."""
    if after.is_new and after.state == State.PENDING:
        return _submitted(after, policy)
    if after.kind == "access" and after.state == State.ACTIVE:
        if before.state != State.ACTIVE:
            return active_message(after, now)
        if before.expires_at != after.expires_at:
            return extended_message(after, now)
        return None
    if not after.is_new and before.state == after.state:
        return None
    step = _last(after)
    text = _state_text(after, step)
    if text is None:
        return None
    auto = after.is_new and after.state == State.APPROVED
    if auto:
        text = f"Your {_what(after)} {code(after.id)} for {_summary_md(after)} was approved "
        text += "automatically by policy. Preparing your kubeconfig…"
    why = after.failure or (step.reason if step else "")
    if after.state in (State.APPROVED, State.EXPIRED):
        why = ""
    return Message(text, [section(md(text)), *_reason_blocks("Why", why)])


# -- audit channel ----------------------------------------------------------------------------


def audit_message(grant: Grant, step: Step | None) -> Message:
    """One state change for the audit channel; ``step`` None records a new request."""
    if step is None:
        change = f"requested by {mention(grant.requester)}"
    else:
        change = f"{step.from_state} → *{step.to_state}* by {mention(step.actor)}"
    text = (
        f"{code(grant.id)} {_what(grant)} {_summary_md(grant)} "
        f"for {mention(grant.requester)}: {change}"
    )
    blocks = [section(md(text))]
    reason = grant.reason if step is None else step.reason
    if reason.strip():
        blocks.append(context(plain(reason, SECTION_TEXT_LIMIT)))
    return Message(text, blocks)


# -- listing and App Home ---------------------------------------------------------------------


def _grant_line(grant: Grant, now: datetime) -> str:
    line = f"{code(grant.id)} {_summary_md(grant)}"
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
    return line


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
        blocks.append(section(md(_grant_line(grant, now) + owner)))
    if len(grants) > budget:
        blocks.append(context(md(f"…and {len(grants) - budget} more")))
    return Message(f"{title}: {len(grants)}", blocks)


@dataclass(frozen=True)
class HomeData:
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
            [section(md(_grant_line(g, now)))]
            + ([grant_buttons(g)] if g.state == State.ACTIVE else [])
            for g in live
        ),
        third,
    )
    blocks += _home_items(
        "Your pending requests",
        "Nothing pending.",
        (
            [section(md(_grant_line(g, now))), actions(button("Cancel request", ids.REVOKE, g.id))]
            for g in pending
        ),
        third,
    )
    blocks += _home_items(
        "Waiting for your decision",
        "Nothing waits for you.",
        (
            [
                section(md(f"{_grant_line(g, now)} · from {mention(g.requester)}")),
                section(plain(g.reason)),
                decision_buttons(g),
            ]
            for g in data.awaiting
        ),
        third,
    )
    return {"type": "home", "blocks": blocks}


# -- command replies ----------------------------------------------------------------------------


def error_message(problem: str, usage: str | None = None) -> Message:
    """A mistake explained: the problem as typed (plain text), then the usage line."""
    blocks: list[JSON] = [section(plain(f"⚠️ {problem}"))]
    if usage:
        lines = "\n".join(escape(line) for line in usage.splitlines())
        blocks.append(context(md(f"Usage:\n```\n{lines}\n```")))
    return Message(escape(problem), blocks)


def info_message(text: str) -> Message:
    """A sentence that may include user text: plain_text, so nothing in it formats."""
    return Message(escape(text), [section(plain(text))])


def help_message(topic: str = "access") -> Message:
    usage = K8S_USAGE if topic == "k8s" else ACCESS_USAGE
    intro = (
        "Cluster reports: node status and Helm releases, problems first; "
        "standing privilege AccessBot did not grant (admins)."
        if topic == "k8s"
        else "Ask for time-limited Kubernetes access; approvers decide in the approvals "
        "channel and the kubeconfig arrives here as a file. `/access` alone opens a form."
    )
    body = "\n".join(escape(line) for line in usage.splitlines())
    durations = "Durations look like `30m`, `2h`, `1d`, `1h30m`."
    blocks = [section(md(intro)), section(md(f"```\n{body}\n```")), context(md(durations))]
    return Message(f"Usage:\n{body}", blocks)


# -- /k8s reports ----------------------------------------------------------------------------------
#
# The rule: every problem reaches the user. The chat message shows the
# (grouped) problems and the table as long as they fit whole; a block's text
# is only ever split at a line end. When anything does not fit, or would have
# to be altered for Slack, the message says so and the file in the DM holds
# the full problem list and the exact table.

# Slack shows long code blocks collapsed anyway; past this many messages a
# table is easier to read as a file.
REPORT_SECTIONS_PER_MESSAGE = 5
REPORT_MAX_MESSAGES = 3
# Sections of problem lines in the first message (3,000 characters each).
REPORT_PROBLEM_SECTIONS = 5
_FENCE = "```"
_BULLET = "• "
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _pack(lines: Sequence[str], room: int) -> list[list[int]]:
    """Indexes of ``lines`` grouped so each group, newline-joined, fits in ``room`` characters.

    Lines are never split: packing stops before the first line longer than
    ``room`` on its own (the caller decides what then).
    """
    groups: list[list[int]] = []
    size = 0
    for i, line in enumerate(lines):
        if len(line) > room:
            break
        if groups and size + 1 + len(line) <= room:
            groups[-1].append(i)
            size += 1 + len(line)
        else:
            groups.append([i])
            size = len(line)
    return groups


def table_chunks(table: str, limit: int = SECTION_TEXT_LIMIT) -> list[str] | None:
    """The table as code-block texts of at most ``limit`` characters, split at line ends.

    None when the table cannot be shown unchanged that way: a line longer than
    a block, a fence (three backticks) that would end the code block, or a
    control character (kubectl passes BEL, NUL, C1...; helm passes even ESC),
    which Slack would drop, show oddly or refuse. The file carries it exactly.
    """
    if _FENCE in table or _CONTROL.search(table):
        return None
    room = limit - 2 * len(_FENCE) - 2
    lines = [escape(raw) for raw in table.rstrip("\n").split("\n")]
    groups = _pack(lines, room)
    if sum(len(g) for g in groups) < len(lines):
        return None
    return [f"{_FENCE}\n" + "\n".join(lines[i] for i in g) + f"\n{_FENCE}" for g in groups]


def _problem_blocks(problems: Sequence[str], count: int, sections: int) -> tuple[list[JSON], int]:
    """Blocks for the problem lines (at most ``sections`` of them), and how many lines they hold."""
    if not problems:
        return [section(md(":white_check_mark: No problems found."))], 0
    blocks = [section(md(f":warning: *{count} problem(s)*"))]
    # Sized by their escaped length, which is what Slack counts.
    groups = _pack([escape(_BULLET + p) for p in problems], SECTION_TEXT_LIMIT)[:sections]
    for group in groups:
        # plain_text: problem lines quote cluster data (node conditions, release notes).
        blocks.append(section(plain("\n".join(_BULLET + problems[i] for i in group))))
    return blocks, sum(len(g) for g in groups)


def report_messages(
    title: str,
    problems: Sequence[str],
    table: str,
    empty: str,
    *,
    count: int | None = None,
) -> list[Message] | None:
    """Problems first, then the table in monospace; None when it needs a file instead.

    ``problems`` are the lines to show (grouped by the caller), ``count`` the
    number of problems they stand for (default: one per line). None when a
    problem line or table line does not fit a block, or there is too much.
    """
    count = len(problems) if count is None else count
    problem_blocks, shown = _problem_blocks(problems, count, REPORT_PROBLEM_SECTIONS)
    if shown < len(problems):
        return None
    first: list[JSON] = [header(title), *problem_blocks]
    if not table.strip():
        return [Message(escape(title), [*first, section(md(escape(empty)))])]
    chunks = table_chunks(table)
    if chunks is None:
        return None
    groups = [
        chunks[i : i + REPORT_SECTIONS_PER_MESSAGE]
        for i in range(0, len(chunks), REPORT_SECTIONS_PER_MESSAGE)
    ]
    if len(groups) > REPORT_MAX_MESSAGES:
        return None
    messages = [Message(escape(title), [*first, *(section(md(c)) for c in groups[0])])]
    for n, group in enumerate(groups[1:], start=2):
        part = f"{title} (part {n} of {len(groups)})"
        messages.append(
            Message(escape(part), [context(plain(part)), *(section(md(c)) for c in group)])
        )
    return messages


def report_file_message(
    title: str, problems: Sequence[str], filename: str, *, count: int | None = None
) -> Message:
    """The summary posted when the report went into a file: what fits, and where the rest is."""
    count = len(problems) if count is None else count
    blocks = [header(title)]
    problem_blocks, shown = _problem_blocks(problems, count, REPORT_PROBLEM_SECTIONS)
    blocks += problem_blocks
    if shown < len(problems):
        blocks.append(
            context(md(f"…and {len(problems) - shown} more problem line(s) in the file."))
        )
    blocks.append(
        section(
            md(
                f"The full problem list and the table are in the file {code(filename)} "
                "in your DM with AccessBot."
            )
        )
    )
    return Message(escape(title), blocks)


def with_file_note(messages: Sequence[Message], filename: str, count: int) -> list[Message]:
    """The messages, the first saying (before its table) that the file has every problem line."""
    first, *rest = messages
    note = context(
        md(f"All {count} problem(s), one line each, are in the file {code(filename)} in your DM.")
    )
    blocks = list(first.blocks)
    at = next(
        (
            i
            for i, b in enumerate(blocks)
            if str(b.get("text", {}).get("text", "")).startswith(_FENCE)
        ),
        len(blocks),
    )
    blocks.insert(at, note)
    return [Message(first.text, blocks), *rest]


def report_file_content(title: str, problems: Sequence[str], table: str) -> str:
    """The file: title, every problem (one line each, none grouped), the exact table."""
    parts = [title, ""]
    if problems:
        parts += [f"{len(problems)} problem(s):", *problems, ""]
    else:
        parts += ["No problems found.", ""]
    return "\n".join(parts) + "\n" + table


# -- /k8s standing ---------------------------------------------------------------------------------


def standing_message(
    title: str,
    counts: Sequence[str],
    lines: Sequence[str],
    notes: Sequence[str],
    filename: str | None,
) -> tuple[Message, bool]:
    """Counts first, then as many whole entry lines as fit, then ``notes``.

    Returns the message and whether every entry line is in it; when not, or
    when ``filename`` is given, the message points at the file in the DM. Lines
    and counts quote names from the cluster, so they go out as plain_text.
    """
    blocks: list[JSON] = [header(title)]
    blocks.append(section(plain("\n".join(counts) if counts else "Nothing found.")))
    groups = _pack([escape(_BULLET + line) for line in lines], SECTION_TEXT_LIMIT)
    groups = groups[:REPORT_PROBLEM_SECTIONS]
    for group in groups:
        blocks.append(section(plain("\n".join(_BULLET + lines[i] for i in group))))
    shown = sum(len(g) for g in groups)
    if shown < len(lines):
        blocks.append(context(md(f"…and {len(lines) - shown} more line(s) in the file.")))
    blocks += [context(plain(note)) for note in notes]
    if filename is not None:
        blocks.append(
            section(md(f"The full list is in the file {code(filename)} in your DM with AccessBot."))
        )
    return Message(escape(title), blocks), shown == len(lines)


# -- revocation receipts ----------------------------------------------------------------------
# Plain UTC times, not Slack's localised dates: a receipt is evidence, quoted as written.


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S UTC on %Y-%m-%d")


def ended_at(grant: Grant) -> datetime | None:
    """When the grant's record moved to its end state (revoked, expired, failed)."""
    for step in reversed(grant.history):
        if step.event is None and step.to_state == grant.state:
            return step.at
    return None


def _check_lines(receipt: Receipt) -> str:
    lines = [("✅ " if _check_passed(c) else "❌ ") + escape(c) for c in receipt.checks]
    return "\n".join(lines) or "no checks"


def _check_passed(check: str) -> bool:
    answer = check.rsplit(": ", 1)[-1]
    return answer in ("404", "not allowed", "none") or answer.startswith("404 ")


def receipt_message(grant: Grant, receipt: Receipt) -> Message:
    """The revocation receipt for the audit channel: grant, cluster, checks, result, time."""
    ended = ended_at(grant)
    result = "verified" if receipt.verified else "FAILED: access may remain"
    title = (
        f"Revocation receipt: {grant.id} verified"
        if receipt.verified
        else f"🚨 Revocation NOT verified: {grant.id}"
    )
    summary = (
        f"{code(grant.id)} {_summary_md(grant)} for {mention(grant.requester)} "
        f"ended ({escape(str(grant.state))})"
        + (f" at {_utc(ended)}" if ended else "")
        + f". Checked on cluster {code(grant.cluster)} at {_utc(receipt.at)}: *{result}*."
    )
    blocks = [
        header(clip_raw(title, HEADER_TEXT_LIMIT)),
        section(md(summary)),
        section(md(f"*What was checked*\n{_check_lines(receipt)}")),
    ]
    if not receipt.verified:
        blocks.append(
            section(md("AccessBot runs the cleanup again until this verifies; a receipt follows."))
        )
    blocks.append(context(plain(CACHE_CAVEAT)))
    text = f"Revocation receipt for {code(grant.id)} on {code(grant.cluster)}: {result}"
    return Message(text, blocks)


def receipt_dm(grant: Grant, receipt: Receipt) -> Message:
    """The requester's copy: "your access to prod ended at 12:03:41 UTC, verified"."""
    ended = ended_at(grant) or receipt.at
    text = (
        f"Your access to {code(grant.cluster)} ({_summary_md(grant)}, grant {code(grant.id)}) "
        f"ended at {_utc(ended)}, verified at {_utc(receipt.at)}."
    )
    return Message(text, [section(md(text)), context(plain(CACHE_CAVEAT))])


def ended_dm(grant: Grant) -> Message:
    """What the "access granted" DM becomes once the grant ended (its buttons go)."""
    ended = ended_at(grant)
    when = f" at {_utc(ended)}" if ended else ""
    text = (
        f"Access ended{when}: {_summary_md(grant)}, grant {code(grant.id)} "
        f"({escape(str(grant.state))}). The kubeconfig file was deleted from Slack."
    )
    return Message(text, [section(md(text))])
