"""Requests against the policy: defaults, rejections that say what is allowed, and
problems reported field by field (each said beside its own field)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.policy import (
    AccessRequestSpec,
    Policy,
    RequestRejected,
    needs_approval,
    parse_policy,
    resolve_request,
    role_clusters,
)
from tests.unit.test_policy import CONTRACT_POLICY, spec


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(CONTRACT_POLICY, "policy.yaml")


# --- request resolution -------------------------------------------------------------


def test_resolve_fills_defaults(policy: Policy) -> None:
    resolved = resolve_request(policy, spec("cluster-admin", cluster=None, namespace=None))
    assert resolved.cluster == "staging"  # the only cluster the role allows
    assert resolved.namespace is None
    assert resolved.scope == "cluster"
    assert resolved.cluster_role == "cluster-admin"
    assert resolved.duration == timedelta(hours=1)
    assert resolved.approvals_required == 2
    assert needs_approval(resolved)


def test_default_duration_is_clamped_to_role_max() -> None:
    text = CONTRACT_POLICY.replace("defaults: {duration: 1h", "defaults: {duration: 6h")
    policy = parse_policy(text)
    assert resolve_request(policy, spec("edit")).duration == timedelta(hours=4)
    assert resolve_request(policy, spec("view")).duration == timedelta(hours=6)


def test_auto_approved_role(policy: Policy) -> None:
    resolved = resolve_request(policy, spec("view", namespace="anything", reason="  look  "))
    assert not needs_approval(resolved)
    assert resolved.reason == "look"


def test_cluster_must_be_chosen_when_several(policy: Policy) -> None:
    with pytest.raises(RequestRejected, match="pick one of: prod, staging"):
        resolve_request(policy, spec(cluster=None))


def test_blank_cluster_counts_as_omitted(policy: Policy) -> None:
    resolved = resolve_request(policy, spec("cluster-admin", cluster=" ", namespace=""))
    assert (resolved.cluster, resolved.namespace) == ("staging", None)


@pytest.mark.parametrize(
    ("request_spec", "message"),
    [
        (spec("admin"), "unknown role 'admin'; roles: cluster-admin, edit, view"),
        (spec(cluster="qa"), "unknown cluster 'qa'; role edit is available on: prod, staging"),
        (
            spec("cluster-admin", cluster="prod", namespace=None),
            "role cluster-admin is not available on cluster prod; it is available on: staging",
        ),
        (spec(namespace=None), "role edit needs a namespace matching: payments, web-*"),
        (
            spec(namespace="billing"),
            "namespace billing is not allowed for role edit; allowed: payments, web-*",
        ),
        (spec(namespace="Web_1"), "'Web_1' is not a valid namespace name"),
        (
            spec("cluster-admin", cluster=None, namespace="kube-system"),
            "role cluster-admin is cluster-wide; do not give a namespace",
        ),
        (spec(duration=timedelta(hours=5)), "5h is above the 4h maximum for role edit"),
        (spec(duration=timedelta(0)), "longer than zero"),
        (spec(reason="   "), "give a reason"),
        (spec(reason="x" * 501), "keep it to 500"),
    ],
)
def test_rejections_say_what_is_allowed(
    policy: Policy, request_spec: AccessRequestSpec, message: str
) -> None:
    with pytest.raises(RequestRejected) as info:
        resolve_request(policy, request_spec)
    assert message in str(info.value)


def test_reason_of_exactly_500_is_fine(policy: Policy) -> None:
    assert len(resolve_request(policy, spec(reason="x" * 500)).reason) == 500


def test_role_clusters(policy: Policy) -> None:
    assert role_clusters(policy, "edit") == ("prod", "staging")
    assert role_clusters(policy, "cluster-admin") == ("staging",)


# --- problems by field ------------------------------------------------------------


def refusal(policy: Policy, request: AccessRequestSpec) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        resolve_request(policy, request)
    return info.value


@pytest.mark.parametrize(
    ("request_spec", "field"),
    [
        (spec("admin"), "role"),
        (spec(""), "role"),
        (spec(cluster="qa"), "cluster"),
        (spec(cluster=None), "cluster"),
        (spec("cluster-admin", cluster="prod", namespace=None), "role"),
        (spec(namespace=None), "namespace"),
        (spec(namespace="billing"), "namespace"),
        (spec(namespace="Web_1"), "namespace"),
        (spec(namespace="kube-system"), "namespace"),
        (spec("cluster-admin", cluster=None, namespace="web-1"), "namespace"),
        (spec(duration=timedelta(hours=5)), "duration"),
        (spec(duration=timedelta(0)), "duration"),
        (spec(reason="   "), "reason"),
        (spec(reason="x" * 501), "reason"),
    ],
)
def test_each_problem_names_its_field(
    policy: Policy, request_spec: AccessRequestSpec, field: str
) -> None:
    refused = refusal(policy, request_spec)
    assert list(refused.problems) == [field]
    beside = refused.problems[field]  # type: ignore[index]
    # Worded to stand beside a form field: a sentence of its own.
    assert not beside[0].islower()
    assert beside.endswith(".")


def test_every_field_at_fault_is_reported_and_the_message_is_the_first(policy: Policy) -> None:
    alone = str(refusal(policy, spec(cluster="qa")))
    refused = refusal(
        policy,
        spec(cluster="qa", namespace="billing", duration=timedelta(hours=5), reason=" "),
    )
    assert list(refused.problems) == ["cluster", "namespace", "duration", "reason"]
    assert str(refused) == alone == "unknown cluster 'qa'; role edit is available on: prod, staging"
    assert refused.problems["namespace"] == "Not allowed for role edit; allowed: payments, web-*."


def test_an_unknown_role_hides_only_what_depends_on_the_role(policy: Policy) -> None:
    refused = refusal(policy, spec("admin", namespace="Web_1", cluster="qa", reason=""))
    assert list(refused.problems) == ["role", "reason"]
    assert str(refused).startswith("unknown role 'admin'")


def test_a_wrong_cluster_does_not_hide_a_protected_namespace(policy: Policy) -> None:
    refused = refusal(policy, spec(cluster="qa", namespace="kube-system"))
    assert "kube-system is protected" in refused.problems["namespace"]
