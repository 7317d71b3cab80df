"""Block Kit builders: pure functions from records to Slack messages and views, one
module per audience.

Nothing here does I/O, so every message can be checked for Slack's limits and
for escaping in unit tests. User-supplied text (reasons, typed values) only
ever appears inside ``plain_text`` objects, escaped (see :mod:`bot.slack.text`).

- :mod:`.kit`: the message type, blocks, buttons, plain answers.
- :mod:`.grants`: how a grant reads in every message (shared phrases, buttons).
- :mod:`.cards`: the approval card.
- :mod:`.permissions`: what a role allows (cards, the form, ``/access roles``).
- :mod:`.dms`: the requester's direct messages.
- :mod:`.audit`: the audit channel and the revocation receipts.
- :mod:`.home`: ``/access list`` and App Home.
- :mod:`.reports`: ``/k8s nodes``, ``/k8s helm``, ``/k8s standing``.
- :mod:`.replies`: the listeners' answers to commands, clicks and forms.
"""

from __future__ import annotations

from bot.slack.blocks.audit import audit_message, ended_at, ended_dm, receipt_dm, receipt_message
from bot.slack.blocks.cards import approval_card
from bot.slack.blocks.dms import (
    active_message,
    extended_message,
    reminder_message,
    requester_update,
)
from bot.slack.blocks.grants import decision_buttons, grant_buttons
from bot.slack.blocks.home import HomeData, grant_list_message, home_view
from bot.slack.blocks.kit import (
    Message,
    actions,
    button,
    context,
    divider,
    error_message,
    header,
    info_message,
    section,
)
from bot.slack.blocks.permissions import (
    PERMISSIONS_CHECKING,
    Permissions,
    allowance_blocks,
    allowance_file,
    allowance_file_name,
    allowance_fits,
    roles_messages,
)
from bot.slack.blocks.replies import help_message
from bot.slack.blocks.reports import (
    REPORT_MAX_MESSAGES,
    REPORT_PROBLEM_SECTIONS,
    REPORT_SECTIONS_PER_MESSAGE,
    ReportOutput,
    helm_output,
    nodes_output,
    report_file_content,
    report_file_message,
    report_messages,
    standing_message,
    standing_output,
    table_chunks,
    with_file_note,
)

__all__ = [
    "PERMISSIONS_CHECKING",
    "REPORT_MAX_MESSAGES",
    "REPORT_PROBLEM_SECTIONS",
    "REPORT_SECTIONS_PER_MESSAGE",
    "HomeData",
    "Message",
    "Permissions",
    "ReportOutput",
    "actions",
    "active_message",
    "allowance_blocks",
    "allowance_file",
    "allowance_file_name",
    "allowance_fits",
    "approval_card",
    "audit_message",
    "button",
    "context",
    "decision_buttons",
    "divider",
    "ended_at",
    "ended_dm",
    "error_message",
    "extended_message",
    "grant_buttons",
    "grant_list_message",
    "header",
    "helm_output",
    "help_message",
    "home_view",
    "info_message",
    "nodes_output",
    "receipt_dm",
    "receipt_message",
    "reminder_message",
    "report_file_content",
    "report_file_message",
    "report_messages",
    "requester_update",
    "roles_messages",
    "section",
    "standing_message",
    "standing_output",
    "table_chunks",
    "with_file_note",
]
