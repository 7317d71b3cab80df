"""k8s.rbac: which escape paths a set of RBAC rules opens (pure; no cluster)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k8s.rbac import BLOCKING_RISKS, RISK_MEANINGS, RISKS, Risk, Rule, analyse, effective_rules

CORE, RBAC, APPS, BATCH = "", "rbac.authorization.k8s.io", "apps", "batch"


def rule(verbs: str, groups: str, resources: str, names: str = "") -> Rule:
    """rule("get list", "", "pods secrets") — space-separated, '-' for the core group."""
    return Rule.of(
        verbs.split(),
        [("" if g == "-" else g) for g in groups.split()] if groups else [""],
        resources.split(),
        names.split(),
    )


def risks(*rules: Rule, namespaced: bool = False) -> set[Risk]:
    return set(analyse(rules, namespaced=namespaced))


def test_every_risk_has_a_meaning_and_blocking_ones_are_the_contracts() -> None:
    assert set(RISK_MEANINGS) == set(RISKS)
    assert sorted(BLOCKING_RISKS) == ["escalation", "impersonation", "rbac-write", "token-minting"]


@pytest.mark.parametrize(
    ("the_rule", "expected"),
    [
        # token minting
        (rule("create", "-", "serviceaccounts/token"), {"token-minting"}),
        (rule("create", "-", "serviceaccounts/token", "app-deployer"), {"token-minting"}),
        (rule("get list", "-", "serviceaccounts/token"), set()),
        (rule("create", "apps", "serviceaccounts/token"), set()),
        (rule("create", "-", "*/token"), {"token-minting"}),
        (rule("create", "-", "serviceaccounts"), set()),
        # impersonation
        (rule("impersonate", "-", "serviceaccounts"), {"impersonation"}),
        (rule("impersonate", "-", "serviceaccounts", "default"), {"impersonation"}),
        (rule("impersonate", "-", "users"), {"impersonation"}),
        (rule("impersonate", "-", "groups"), {"impersonation"}),
        (rule("impersonate", "authentication.k8s.io", "uids"), {"impersonation"}),
        (rule("get", "-", "users"), set()),
        # escalation
        (rule("escalate", RBAC, "roles"), {"escalation"}),
        (rule("escalate", RBAC, "clusterroles"), {"escalation"}),
        (rule("bind", RBAC, "clusterroles", "admin"), {"escalation"}),
        (rule("bind", RBAC, "roles"), {"escalation"}),
        (rule("bind", CORE or "-", "roles"), set()),
        # RBAC writes
        *[
            (rule(verb, RBAC, resource), {"rbac-write"})
            for verb in ("create", "update", "patch")
            for resource in ("roles", "rolebindings", "clusterroles", "clusterrolebindings")
        ],
        (rule("get list watch delete", RBAC, "roles rolebindings"), set()),
        # create of a new object carries no name: resourceNames never allow it
        (rule("create", RBAC, "rolebindings", "mine"), set()),
        (rule("update patch", RBAC, "rolebindings", "mine"), {"rbac-write"}),
        # Pods and every kind that makes Pods
        *[
            (rule("create", group, resource), {"pod-create"})
            for group, resource in [
                ("-", "pods"),
                ("-", "replicationcontrollers"),
                (APPS, "deployments"),
                (APPS, "replicasets"),
                (APPS, "statefulsets"),
                (APPS, "daemonsets"),
                (BATCH, "jobs"),
                (BATCH, "cronjobs"),
                ("extensions", "deployments"),
            ]
        ],
        (rule("update", APPS, "deployments"), {"pod-create"}),
        (rule("patch", "-", "pods", "web-0"), {"pod-create"}),
        (rule("create", "-", "pods", "web-0"), set()),
        (rule("get list watch delete", "-", "pods"), set()),
        (rule("create", APPS, "pods"), set()),
        (rule("create", "-", "pods/eviction"), set()),
        (rule("update", APPS, "deployments/scale"), set()),
        # exec, attach, port-forward (the kubelet's websocket verb is get)
        *[
            (rule(verb, "-", resource), {"exec"})
            for verb in ("create", "get")
            for resource in ("pods/exec", "pods/attach", "pods/portforward")
        ],
        (rule("get", "-", "pods/exec", "web-0"), {"exec"}),
        (rule("patch", "-", "pods/ephemeralcontainers"), {"exec"}),
        (rule("get list watch", "-", "pods/log"), set()),
        # Secrets
        (rule("get", "-", "secrets"), {"secrets-read"}),
        (rule("list", "-", "secrets"), {"secrets-read"}),
        (rule("watch", "-", "secrets"), {"secrets-read"}),
        (rule("get", "-", "secrets", "tls-cert"), {"secrets-read"}),
        # list --field-selector metadata.name=tls-cert is authorized with that name
        (rule("list", "-", "secrets", "tls-cert"), {"secrets-read"}),
        (rule("create delete", "-", "secrets"), set()),
        (rule("get", "-", "configmaps"), set()),
        # nodes/proxy
        (rule("get", "-", "nodes/proxy"), {"node-proxy"}),
        (rule("create", "-", "nodes/proxy"), {"node-proxy"}),
        (rule("get list", "-", "nodes nodes/status"), set()),
        # wildcards
        (rule("get", "-", "*"), {"wildcard", "secrets-read", "exec", "node-proxy"}),
        (rule("*", "-", "configmaps"), {"wildcard"}),
        (rule("get list watch", "*", "configmaps"), set()),
        (
            rule("*", "*", "*"),
            set(RISKS),
        ),
        (
            rule("*", "-", "*"),
            set(RISKS) - {"escalation", "rbac-write"},
        ),
        (
            rule("*", "-", "pods pods/exec"),
            {"wildcard", "pod-create", "exec"},
        ),
        (rule("*", RBAC, "*"), {"wildcard", "escalation", "rbac-write"}),
    ],
)
def test_single_rules(the_rule: Rule, expected: set[Risk]) -> None:
    assert risks(the_rule) == expected


def test_minting_through_a_service_account_token_secret() -> None:
    # The token controller fills a kubernetes.io/service-account-token Secret with a
    # token that never expires; creating one and reading it back is minting.
    create, read = rule("create", "-", "secrets"), rule("get", "-", "secrets")
    assert risks(create) == set()
    assert risks(create, read) == {"token-minting", "secrets-read"}
    assert risks(create, rule("list", "-", "secrets")) == {"token-minting", "secrets-read"}
    # the creator picks the name, so reading back only that name is enough
    named = rule("get", "-", "secrets", "my-token")
    assert risks(create, named) == {"token-minting", "secrets-read"}


def test_minting_through_csr_approval_needs_both_halves() -> None:
    approval = rule("update", "certificates.k8s.io", "certificatesigningrequests/approval")
    signer = rule(
        "approve", "certificates.k8s.io", "signers", "kubernetes.io/kube-apiserver-client"
    )
    assert risks(approval) == set()
    assert risks(signer) == set()
    assert risks(approval, signer) == {"token-minting"}
    assert risks(approval, signer, namespaced=True) == set()


def test_non_resource_rules_open_nothing() -> None:
    assert risks(Rule.of(["*"], non_resource_urls=["*"])) == set()
    assert risks(Rule.of(["get"], non_resource_urls=["/healthz"])) == set()


def test_a_rolebinding_cannot_reach_what_has_no_namespace() -> None:
    everything = rule("*", "*", "*")
    assert risks(everything, namespaced=True) == set(RISKS) - {"node-proxy"}
    assert risks(rule("impersonate", "-", "users groups"), namespaced=True) == set()
    assert risks(rule("impersonate", "-", "serviceaccounts"), namespaced=True) == {"impersonation"}
    assert risks(rule("create", RBAC, "clusterrolebindings"), namespaced=True) == set()
    assert risks(rule("create", RBAC, "rolebindings"), namespaced=True) == {"rbac-write"}
    # bind on a ClusterRole is checked in the RoleBinding's namespace
    assert risks(rule("bind", RBAC, "clusterroles"), namespaced=True) == {"escalation"}
    assert risks(rule("get", "-", "nodes/proxy"), namespaced=True) == set()
    # escalate matters where the (Cluster)Role is written: a ClusterRole has no namespace
    assert risks(rule("escalate", RBAC, "clusterroles"), namespaced=True) == set()
    assert risks(rule("escalate", RBAC, "roles"), namespaced=True) == {"escalation"}


# --- aggregation --------------------------------------------------------------------


def cluster_role(
    name: str,
    rules: list[Rule] | None = None,
    labels: dict[str, str] | None = None,
    selectors: list[Any] | None = None,
) -> Any:
    api_rules = [
        SimpleNamespace(
            verbs=list(r.verbs),
            api_groups=list(r.api_groups),
            resources=list(r.resources),
            resource_names=list(r.resource_names) or None,
            non_resource_urls=None,
        )
        for r in rules or []
    ]
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name, labels=labels),
        rules=api_rules or None,
        aggregation_rule=(
            SimpleNamespace(cluster_role_selectors=selectors) if selectors is not None else None
        ),
    )


def labels_selector(**labels: str) -> Any:
    return SimpleNamespace(match_labels=labels, match_expressions=None)


def expression_selector(key: str, operator: str, values: list[str] | None = None) -> Any:
    expr = SimpleNamespace(key=key, operator=operator, values=values)
    return SimpleNamespace(match_labels=None, match_expressions=[expr])


def test_unfilled_aggregated_role_follows_its_selectors_recursively() -> None:
    roles = {
        r.metadata.name: r
        for r in [
            cluster_role("edit", selectors=[labels_selector(**{"agg-to-edit": "true"})]),
            cluster_role(
                "edit-parts",
                [rule("create", "-", "serviceaccounts/token")],
                labels={"agg-to-edit": "true"},
            ),
            # an aggregated role aggregated into another: the chain is followed
            cluster_role(
                "nested",
                labels={"agg-to-edit": "true"},
                selectors=[labels_selector(nested="yes")],
            ),
            cluster_role("nested-part", [rule("get", "-", "secrets")], labels={"nested": "yes"}),
            cluster_role("unrelated", [rule("*", "*", "*")], labels={"agg-to-edit": "false"}),
        ]
    }
    found = effective_rules("edit", roles)
    assert found is not None
    assert set(analyse(found)) == {"token-minting", "secrets-read"}
    assert effective_rules("missing", roles) is None


def test_filled_aggregated_role_is_not_counted_twice_and_cycles_end() -> None:
    part = rule("get", "-", "pods")
    roles = {
        "a": cluster_role("a", [part], labels={"x": "1"}, selectors=[labels_selector(x="1")]),
        "b": cluster_role("b", [part], labels={"x": "1"}, selectors=[labels_selector(x="1")]),
    }
    assert effective_rules("a", roles) == [part]


@pytest.mark.parametrize(
    ("selector", "picked"),
    [
        (expression_selector("tier", "In", ["edit", "admin"]), {"edit-part", "admin-part"}),
        (expression_selector("tier", "NotIn", ["edit"]), {"admin-part", "plain"}),
        (expression_selector("tier", "Exists"), {"edit-part", "admin-part"}),
        (expression_selector("tier", "DoesNotExist"), {"plain"}),
        (labels_selector(), {"edit-part", "admin-part", "plain"}),
    ],
)
def test_selector_expressions(selector: Any, picked: set[str]) -> None:
    parts = {
        "edit-part": rule("get", "-", "secrets"),
        "admin-part": rule("create", RBAC, "roles"),
        "plain": rule("create", "-", "pods"),
    }
    tiers = {"edit-part": "edit", "admin-part": "admin", "plain": None}
    roles = {
        name: cluster_role(name, [r], labels={"tier": t} if t else {}) for name, (r, t) in
        ((n, (parts[n], tiers[n])) for n in parts)
    }  # fmt: skip
    roles["agg"] = cluster_role("agg", selectors=[selector])
    found = effective_rules("agg", roles) or []
    assert set(found) == {parts[n] for n in picked}


# --- properties ---------------------------------------------------------------------

VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "impersonate",
         "escalate", "bind", "approve", "*"]  # fmt: skip
GROUPS = ["", "apps", "batch", RBAC, "authentication.k8s.io", "certificates.k8s.io", "*"]
RESOURCES = ["pods", "pods/exec", "pods/attach", "pods/log", "secrets", "serviceaccounts",
             "serviceaccounts/token", "users", "groups", "roles", "rolebindings",
             "clusterroles", "clusterrolebindings", "deployments", "jobs", "nodes/proxy",
             "nodes", "configmaps", "signers", "certificatesigningrequests/approval",
             "*", "*/exec", "*/token"]  # fmt: skip

rules_st = st.builds(
    Rule.of,
    st.lists(st.sampled_from(VERBS), min_size=1, max_size=3),
    st.lists(st.sampled_from(GROUPS), min_size=1, max_size=2),
    st.lists(st.sampled_from(RESOURCES), min_size=1, max_size=3),
    st.one_of(st.just([]), st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2)),
)


@given(st.lists(rules_st, max_size=5), st.lists(rules_st, max_size=5), st.booleans())
def test_more_rules_never_mean_fewer_risks(a: list[Rule], b: list[Rule], namespaced: bool) -> None:
    assert analyse(a, namespaced=namespaced) <= analyse(a + b, namespaced=namespaced)


@given(st.lists(rules_st, max_size=6))
def test_a_rolebinding_never_opens_more_than_a_clusterrolebinding(rules: list[Rule]) -> None:
    assert analyse(rules, namespaced=True) <= analyse(rules)


@given(st.lists(rules_st, max_size=6))
def test_naming_objects_never_adds_risks(rules: list[Rule]) -> None:
    named = [Rule.of(r.verbs, r.api_groups, r.resources, ["only-this"]) for r in rules]
    assert analyse(named) <= analyse([Rule.of(r.verbs, r.api_groups, r.resources) for r in rules])


@given(st.lists(rules_st, max_size=6))
def test_wildcard_exactly_when_a_star_verb_or_resource(rules: list[Rule]) -> None:
    assert ("wildcard" in analyse(rules)) == any(
        "*" in r.verbs or "*" in r.resources for r in rules
    )


@given(st.lists(rules_st, max_size=6))
def test_order_and_duplicates_do_not_matter(rules: list[Rule]) -> None:
    assert analyse(rules) == analyse(list(reversed(rules)) + rules)
