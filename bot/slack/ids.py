"""Action, callback and block IDs: the contract between our messages and our listeners.

The four button action IDs are part of the external contract (CONTRACT.md); the
rest are ours, prefixed ``access_`` so they never collide with another app's.
"""

from __future__ import annotations

# Buttons (contract): value = request or grant id.
APPROVE = "access_approve"
DENY = "access_deny"
EXTEND = "access_extend"
REVOKE = "access_revoke"

# Ours.
OPEN_MODAL = "access_open_modal"  # App Home "Request access"
MODAL_CLUSTER = "access_modal_cluster"  # cluster picker inside the request modal
MODAL_ROLE = "access_modal_role"  # role picker: shows what the chosen role allows

# Views.
REQUEST_MODAL = "access_request_modal"  # contract
DENY_MODAL = "access_deny_modal"
EXTEND_MODAL = "access_extend_modal"

# Input blocks of the modals; the action ID inside them is always VALUE, except the
# cluster picker, which dispatches MODAL_CLUSTER to refresh the role choices, and
# the role picker, which dispatches MODAL_ROLE to show what the role allows.
VALUE = "value"
CLUSTER_BLOCK = "cluster"
ROLE_BLOCK_PREFIX = "role"
NAMESPACE_BLOCK = "namespace"
DURATION_BLOCK = "duration"
REASON_BLOCK = "reason"
START_BLOCK = "start"  # the request modal's scheduled start (bot.slack.schedule)
PERMISSIONS_BLOCK = "permissions"  # prefix of the blocks saying what the role allows
