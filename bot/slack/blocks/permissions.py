"""What a role allows, in Slack: the blocks on cards, the request form and
``/access roles``, and the file holding a role's full list when it does not fit."""

from __future__ import annotations

from collections.abc import Sequence

from bot.durations import format_duration
from bot.models import Grant
from bot.policy import Policy
from bot.slack.blocks.grants import insecure_md, reason_blocks
from bot.slack.blocks.kit import Message, context, divider, header, section
from bot.slack.text import (
    FIELD_TEXT_LIMIT,
    JSON,
    MESSAGE_BLOCK_LIMIT,
    SECTION_TEXT_LIMIT,
    code,
    escape,
    md,
    plain,
)
from bot.usecases.permissions import (
    BLOCKING_RISKS,
    CLUSTER_SCOPE,
    PERMISSIONS_CHECKING,
    Allowance,
    Permissions,
    flag_meaning,
    rules_text,
)

__all__ = [
    "PERMISSIONS_CHECKING",
    "Permissions",
    "allowance_blocks",
    "allowance_file",
    "allowance_file_name",
    "allowance_fits",
    "roles_messages",
]

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


def what_is_asked(grant: Grant, permissions: Permissions) -> list[JSON]:
    """What an approver weighs on a card: the reason, what the role allows there, and
    the warning when the cluster is trusted insecurely."""
    blocks = reason_blocks("Reason", grant.reason)
    blocks += allowance_blocks(
        permissions,
        cluster_role=grant.cluster_role,
        cluster=grant.cluster,
        namespaced=grant.namespace is not None,
    )
    if grant.tls_insecure:
        blocks.append(section(md(insecure_md(grant))))
    return blocks
