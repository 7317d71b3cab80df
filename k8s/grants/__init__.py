"""Grant objects on a cluster: provision, revoke, list, verify.

The package's public names, from the modules that hold them:

- :mod:`k8s.grants.objects`: ``GrantSpec``, ``ObjectRef``, ``ManagedObject``,
  labels and annotations, ``list_managed``, ``annotate``
- :mod:`k8s.grants.tokens`: ``IssuedToken``, ``issue_token`` (TokenRequest)
- :mod:`k8s.grants.provisioning`: ``provision``, ``revoke``, ``revoke_objects``
- :mod:`k8s.grants.access_check`: ``verify``, ``check_issued_trust`` (the issued kubeconfig works)
- :mod:`k8s.grants.receipt_checks`: ``verify_gone``, ``GoneCheck``, ``Review`` (access is gone)
"""

from __future__ import annotations

from k8s.grants.access_check import Verification, check_issued_trust, verify
from k8s.grants.objects import (
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
from k8s.grants.provisioning import (
    ensure_binding,
    ensure_service_account,
    provision,
    revoke,
    revoke_objects,
)
from k8s.grants.receipt_checks import (
    MAX_REVIEWS,
    GoneCheck,
    Review,
    representative_reviews,
    verify_gone,
)
from k8s.grants.tokens import (
    MIN_TOKEN_SECONDS,
    TOKEN_CLOCK_SKEW,
    IssuedToken,
    issue_token,
    token_seconds,
)
from k8s.paging import list_all

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
