"""Which escape paths a ClusterRole opens: RBAC rules in, a set of risk names out.

A grant is meant to end when AccessBot revokes it. Some permissions let its holder
make access that outlives the grant (a year-long token for another ServiceAccount,
a binding to an identity they keep, a Pod running as any ServiceAccount) or reach
far beyond the role (impersonation, nodes/proxy). This package names those paths.

Its public names, from the modules that hold them: :mod:`k8s.rbac.rules` (``Rule``, effective rules,
aggregation), :mod:`k8s.rbac.risks` (``analyse``, ``RISKS``, ``RiskCache``),
:mod:`k8s.rbac.allowance` (``describe``, ``Allowance``, ``AllowanceCache``).

The analysis (``analyse``) is pure. ``cluster_role_rules`` reads a ClusterRole from
a cluster and resolves ``aggregationRule`` label selectors itself, because a
cluster without a controller-manager never fills an aggregated role's ``rules``.

Matching follows the RBAC authorizer exactly (kubernetes
``pkg/apis/rbac/v1/evaluation_helpers.go``): ``*`` matches any verb, group or
resource (subresources included), ``*/sub`` matches that subresource of any
resource, and ``resourceNames`` restricts a rule to requests that carry a name,
which a ``create`` of a new object never does (a ``list`` may, through a
``metadata.name`` field selector).
"""

from __future__ import annotations

from k8s.rbac.allowance import (
    CLUSTER_SCOPE,
    CLUSTER_SCOPE_MEANING,
    Allowance,
    AllowanceCache,
    allowance_of,
    describe,
    flag_meaning,
    rules_text,
)
from k8s.rbac.risks import BLOCKING_RISKS, RISK_MEANINGS, RISKS, Risk, RiskCache, analyse, ordered
from k8s.rbac.rules import (
    Rule,
    aggregated_roles,
    cluster_role_rules,
    cluster_roles,
    effective_rules,
    rules_from_api,
)

__all__ = [
    "BLOCKING_RISKS",
    "CLUSTER_SCOPE",
    "CLUSTER_SCOPE_MEANING",
    "RISKS",
    "RISK_MEANINGS",
    "Allowance",
    "AllowanceCache",
    "Risk",
    "RiskCache",
    "Rule",
    "aggregated_roles",
    "allowance_of",
    "analyse",
    "cluster_role_rules",
    "cluster_roles",
    "describe",
    "effective_rules",
    "flag_meaning",
    "ordered",
    "rules_from_api",
    "rules_text",
]
