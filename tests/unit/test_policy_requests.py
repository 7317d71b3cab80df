"""A request is checked field by field: each problem is said beside its own field."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.policy import AccessRequestSpec, Policy, RequestRejected, parse_policy, resolve_request
from tests.unit.test_policy import CONTRACT_POLICY, spec


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(CONTRACT_POLICY, "policy.yaml")


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
