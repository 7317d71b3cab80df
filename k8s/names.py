"""Kubernetes names and labels for the objects AccessBot creates, and the two name
rules the whole bot shares: the DNS-1123 label (namespaces, cluster names) and a
binding's :data:`Scope`. This is the lowest layer, so ``bot/`` imports them from here.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "accessbot"
GRANT_ID = "accessbot.io/grant-id"
REQUESTER = "accessbot.io/requester"
ROLE = "accessbot.io/role"
EXPIRES_AT = "accessbot.io/expires-at"
APPROVED_BY = "accessbot.io/approved-by"

MANAGED_SELECTOR = f"{MANAGED_BY}={MANAGED_BY_VALUE}"

Scope = Literal["namespace", "cluster"]
"""Where a grant applies: one namespace (a RoleBinding) or the whole cluster (a
ClusterRoleBinding)."""

# Kubernetes' IsDNS1123Label (k8s.io/apimachinery/pkg/util/validation): at most 63
# characters of [a-z0-9-], alphanumeric at both ends. ``\Z`` rather than ``$``, which
# would also accept a trailing newline.
DNS1123_LABEL = re.compile(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
DNS_LABEL_RULE = "lowercase letters, digits and '-', starting and ending alphanumeric, at most 63"
"""The label rule in words, to follow "... (" and precede " characters)" in a message."""
GRANT_ID_RE = re.compile(r"^[a-z0-9]{4,20}$")
# Room left for "-" + grant id (<= 20) inside the 63-character label limit.
_HANDLE_BUDGET = 63 - 1 - 20


def is_dns_label(text: str) -> bool:
    """Whether ``text`` is an RFC 1123 label, Kubernetes' rule for namespace names.

    The same test as Kubernetes' ``IsDNS1123Label`` (k8s.io/apimachinery/pkg/util/
    validation): 1-63 characters of ``a-z``, ``0-9`` and ``-``, starting and ending
    with a letter or digit. AccessBot holds cluster names to it too.
    """
    return DNS1123_LABEL.match(text) is not None


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
