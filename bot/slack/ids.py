"""Action, callback and block IDs: the contract between our messages and our listeners.

The button action IDs marked contract are part of the external contract (CONTRACT.md); the
rest are ours, prefixed ``access_`` so they never collide with another app's.
"""

from __future__ import annotations

# Buttons (contract): value = request or grant id.
APPROVE = "access_approve"
DENY = "access_deny"
EXTEND = "access_extend"
REVOKE = "access_revoke"
RATIFY = "access_ratify"  # ratify a break-glass grant
NARROW = "access_approve_narrow"  # approve with changes: opens NARROW_MODAL
EXTEND_EXISTING = "access_extend_existing"  # the offer made when a request duplicates a grant

# Ours.
OPEN_MODAL = "access_open_modal"  # App Home "Request access"
MODAL_CLUSTER = "access_modal_cluster"  # cluster picker inside the request modal
MODAL_ROLE = "access_modal_role"  # role picker: shows what the chosen role allows
OFFER_CANCEL = "access_offer_cancel"  # the offer's Cancel: value = grant id

# Views.
REQUEST_MODAL = "access_request_modal"  # contract
DENY_MODAL = "access_deny_modal"
EXTEND_MODAL = "access_extend_modal"
NARROW_MODAL = "access_narrow_modal"

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
