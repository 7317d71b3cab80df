"""Kubernetes names and labels for the objects AccessBot creates."""

from __future__ import annotations

import re
import unicodedata

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "accessbot"
GRANT_ID = "accessbot.io/grant-id"
REQUESTER = "accessbot.io/requester"
ROLE = "accessbot.io/role"
EXPIRES_AT = "accessbot.io/expires-at"
APPROVED_BY = "accessbot.io/approved-by"

MANAGED_SELECTOR = f"{MANAGED_BY}={MANAGED_BY_VALUE}"

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
GRANT_ID_RE = re.compile(r"^[a-z0-9]{4,20}$")
# Room left for "-" + grant id (<= 20) inside the 63-character label limit.
_HANDLE_BUDGET = 63 - 1 - 20


def grant_selector(grant_id: str) -> str:
    return f"{MANAGED_SELECTOR},{GRANT_ID}={grant_id}"


def slug(text: str, limit: int = _HANDLE_BUDGET) -> str:
    """A DNS-1123 fragment that still reads like the Slack handle it came from."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return cleaned[:limit].rstrip("-") or "user"


def service_account_name(handle: str, grant_id: str) -> str:
    """``<handle-slug>-<grant-id>``: unique per grant because the id has no dashes."""
    if not GRANT_ID_RE.match(grant_id):
        raise ValueError(f"grant id {grant_id!r} must be 4-20 lowercase letters or digits")
    return f"{slug(handle)}-{grant_id}"


def binding_name(sa_name: str) -> str:
    # ClusterRoleBindings share one cluster-wide namespace with everyone else's:
    # the prefix keeps ours recognisable and out of their way.
    return f"accessbot-{sa_name}"
