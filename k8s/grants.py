"""Grant objects on a cluster: provision, revoke, list, verify (the public names, in one place).

The work lives in modules named for what they hold; this module re-exports
their public names so ``from k8s import grants`` keeps working:

- :mod:`k8s.grant_objects`: ``GrantSpec``, ``ObjectRef``, ``ManagedObject``,
  labels and annotations, ``list_managed``, ``annotate``
- :mod:`k8s.tokens`: ``IssuedToken``, ``issue_token`` (TokenRequest)
- :mod:`k8s.provisioning`: ``provision``, ``revoke``, ``revoke_objects``
- :mod:`k8s.access_check`: ``verify``, ``check_issued_trust`` (the issued kubeconfig works)
- :mod:`k8s.receipt_checks`: ``verify_gone``, ``GoneCheck``, ``Review`` (access is gone)
"""

from __future__ import annotations

from k8s.access_check import Verification, check_issued_trust, verify
from k8s.grant_objects import (
    GrantSpec,
    ManagedObject,
    ObjectKind,
    ObjectRef,
    Scope,
    annotate,
    annotate_objects,
    facts,
    grant_annotations,
    list_managed,
    objects_of,
    parse_rfc3339,
    rfc3339,
)
from k8s.paging import list_all
from k8s.provisioning import (
    ensure_binding,
    ensure_service_account,
    provision,
    revoke,
    revoke_objects,
)
from k8s.receipt_checks import (
    MAX_REVIEWS,
    GoneCheck,
    Review,
    representative_reviews,
    verify_gone,
)
from k8s.tokens import MIN_TOKEN_SECONDS, TOKEN_CLOCK_SKEW, IssuedToken, issue_token, token_seconds

__all__ = [
    "MAX_REVIEWS",
    "MIN_TOKEN_SECONDS",
    "TOKEN_CLOCK_SKEW",
    "GoneCheck",
    "GrantSpec",
    "IssuedToken",
    "ManagedObject",
    "ObjectKind",
    "ObjectRef",
    "Review",
    "Scope",
    "Verification",
    "annotate",
    "annotate_objects",
    "check_issued_trust",
    "ensure_binding",
    "ensure_service_account",
    "facts",
    "grant_annotations",
    "issue_token",
    "list_all",
    "list_managed",
    "objects_of",
    "parse_rfc3339",
    "provision",
    "representative_reviews",
    "revoke",
    "revoke_objects",
    "rfc3339",
    "token_seconds",
    "verify",
    "verify_gone",
]
