"""Pure rules of issue 15 items 3 and 4: the policy keys ``max_extensions`` and
``extend_after`` (validated like every key), when a grant may be extended
(bot.extension_rules), and what an approver may narrow (bot.narrowing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.extension_rules import check_extension_rules, extendable_from
from bot.lifecycle import ExtensionRejected, State
from bot.models import Grant
from bot.narrowing import NarrowingAsk, narrow, narrower_namespaces
from bot.policy import PolicyError, RequestRejected, parse_policy

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

POLICY = """
approvals_channel: C0APPROVALS
admins: [U0ADMIN]
clusters: {a: {context: a}}
roles:
  edit: {cluster_role: edit, scope: namespace, namespaces: ["team-*"], max_duration: 4h,
         approvals: 1, %s}
  admin: {cluster_role: cluster-admin, scope: cluster, max_duration: 1h, approvals: 1}
"""


def policy(extra: str = "approvers: [U0LEAD]"):  # type: ignore[no-untyped-def]
    return parse_policy(POLICY % extra)


def grant(**changes: object) -> Grant:
    fields: dict[str, object] = {
        "id": "abcdefgh23", "requester": "U0ALICE", "handle": "alice", "role": "edit",
        "cluster": "a", "namespace": "team-a", "scope": "namespace", "cluster_role": "edit",
        "duration_s": 7200, "reason": "fix", "approvals_required": 1, "created_at": NOW,
        "pending_until": NOW + timedelta(hours=24),
    }  # fmt: skip
    fields.update(changes)
    return Grant.model_validate(fields)


def active(hours: float = 1, *, extensions: int = 0) -> Grant:
    g = grant(duration_s=int(hours * 3600))
    g = g.moved(State.APPROVED, "U0LEAD", NOW).moved(State.PROVISIONING, "accessbot", NOW)
    g = g.moved(State.ACTIVE, "accessbot", NOW)
    markers = tuple(f"x{n}" for n in range(extensions))
    return g.model_copy(update={"expires_at": NOW + timedelta(hours=hours), "extensions": markers})


# -- the policy keys -------------------------------------------------------------------------


def test_the_keys_default_to_unlimited_and_at_once() -> None:
    role = policy().roles["edit"]
    assert (role.max_extensions, role.extend_after) == (None, 0.0)
    role = policy("max_extensions: 2, extend_after: 0.5").roles["edit"]
    assert (role.max_extensions, role.extend_after) == (2, 0.5)
    assert policy("max_extensions: 0, extend_after: 1").roles["edit"].max_extensions == 0


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("max_extensions: -1", "roles.edit.max_extensions: must be greater than or equal to 0"),
        ("max_extensions: 1.5", "roles.edit.max_extensions: expected a whole number"),
        ("max_extensions: true", "roles.edit.max_extensions: expected a whole number"),
        ("extend_after: 1.5", "roles.edit.extend_after: must be less than or equal to 1"),
        ("extend_after: -0.1", "roles.edit.extend_after: must be greater than or equal to 0"),
        ("extend_after: half", "roles.edit.extend_after: must be a valid number"),
        ("max_extension: 2", "roles.edit.max_extension"),
    ],
)
def test_bad_values_name_the_key(extra: str, problem: str) -> None:
    with pytest.raises(PolicyError, match=problem.replace(".", r"\.")):
        policy(extra)


# -- when a grant may be extended ---------------------------------------------------------


def test_extend_after_is_a_fraction_of_the_grant_from_its_activation() -> None:
    role = policy("extend_after: 0.5").roles["edit"]
    g = active(1)
    assert extendable_from(g, role) == NOW + timedelta(minutes=30)
    with pytest.raises(ExtensionRejected, match=r"once 50% of the grant has passed: from 12:30"):
        check_extension_rules(g, role, "edit", NOW + timedelta(minutes=29))
    check_extension_rules(g, role, "edit", NOW + timedelta(minutes=30))
    # Extended to 2h, the grant is longer: half of it is later.
    longer = g.model_copy(update={"expires_at": NOW + timedelta(hours=2)})
    assert extendable_from(longer, role) == NOW + timedelta(hours=1)


def test_without_extend_after_an_extension_never_waits_even_on_a_clock_behind() -> None:
    """The default (0) imposes no wait: a clock that reads before the activation (a
    skewed replica, a request asked a moment before) is no reason to refuse."""
    role = policy().roles["edit"]
    check_extension_rules(active(), role, "edit", NOW - timedelta(minutes=15))


def test_max_extensions_counts_the_extensions_applied() -> None:
    role = policy("max_extensions: 2").roles["edit"]
    check_extension_rules(active(extensions=1), role, "edit", NOW)
    with pytest.raises(ExtensionRejected, match=r"2 extension\(s\), the most role edit allows"):
        check_extension_rules(active(extensions=2), role, "edit", NOW)
    none = policy("max_extensions: 0").roles["edit"]
    with pytest.raises(ExtensionRejected, match="allows no extensions"):
        check_extension_rules(active(), none, "edit", NOW)
    check_extension_rules(active(extensions=50), policy().roles["edit"], "edit", NOW)


# -- narrowing ------------------------------------------------------------------------------


def test_an_approver_may_shorten_and_nothing_else() -> None:
    pol = policy()
    pending = grant()
    assert narrower_namespaces(pol, pending) == ["team-a"]
    same = narrow(pol, pending, NarrowingAsk())
    assert (same.duration, same.namespace, same.changes) == (timedelta(hours=2), "team-a", ())
    shorter = narrow(pol, pending, NarrowingAsk(duration=timedelta(minutes=30), namespace="team-a"))
    assert shorter.changes == ("duration 2h → 30m",)
    assert shorter.applied_to(pending).duration_s == 1800


@pytest.mark.parametrize(
    ("ask", "field"),
    [
        (NarrowingAsk(duration=timedelta(hours=3)), "duration"),
        (NarrowingAsk(duration=timedelta(0)), "duration"),
        (NarrowingAsk(namespace="team-b"), "namespace"),
        (NarrowingAsk(cluster="b"), "cluster"),
        (NarrowingAsk(role="admin"), "role"),
    ],
)
def test_anything_wider_or_different_is_refused(ask: NarrowingAsk, field: str) -> None:
    with pytest.raises(RequestRejected) as refused:
        narrow(policy(), grant(), ask)
    assert set(refused.value.problems) == {field}


def test_a_cluster_wide_request_stays_cluster_wide_and_a_decided_one_is_left_alone() -> None:
    pol = policy()
    wide = grant(role="admin", namespace=None, scope="cluster", cluster_role="cluster-admin")
    assert narrower_namespaces(pol, wide) == []
    with pytest.raises(RequestRejected, match="cluster-wide"):
        narrow(pol, wide, NarrowingAsk(namespace="team-a"))
    decided = grant().moved(State.DENIED, "U0LEAD", NOW)
    with pytest.raises(RequestRejected, match="already denied"):
        narrow(pol, decided, NarrowingAsk())
