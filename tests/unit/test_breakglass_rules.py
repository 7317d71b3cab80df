"""The pure parts of break-glass and reason rules (issue 15, items 5 and 6): the policy
keys and their errors, the reason rule in resolve_request/recheck_request, the
RATIFY step of the agenda and the metric's reading of a change."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml

from bot.agenda import NextStep, StepKind, Timing, next_step
from bot.lifecycle import State
from bot.metrics import break_glass_outcome
from bot.models import BreakGlass, Grant
from bot.policy import (
    AccessRequestSpec,
    PolicyError,
    RequestRejected,
    parse_policy,
    recheck_request,
    resolve_request,
)
from bot.policy_breakglass import resolve_break_glass

BASE: dict[str, Any] = {
    "approvals_channel": "C0APPROVALS",
    "admins": ["U0ADMIN"],
    "clusters": {"a": {"context": "a"}},
    "roles": {
        "fix": {
            "cluster_role": "edit", "scope": "namespace", "max_duration": "2h",
            "approvers": ["U0LEAD"], "namespaces": ["team-*"],
            "break_glass": {"ratify_within": "15m", "approvals": 1},
            "reason": {"required": True, "pattern": "^[A-Z]+-[0-9]+",
                       "hint": "a ticket like OPS-123"},
        },
        "edit": {"cluster_role": "edit", "scope": "namespace", "max_duration": "2h",
                 "approvers": ["U0LEAD"], "namespaces": ["team-*"]},
    },
    "defaults": {"reminder_before": "10m"},
}  # fmt: skip
POLICY = parse_policy(yaml.safe_dump(BASE))
HINT = "The reason must match ^[A-Z]+-[0-9]+ (a ticket like OPS-123)"


def with_role(role: str, **keys: Any) -> str:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["roles"][role].update(keys)
    return yaml.safe_dump(data)


def problems(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy.yaml")
    return str(info.value)


def spec(role: str = "fix", reason: str = "OPS-1 fix it") -> AccessRequestSpec:
    return AccessRequestSpec("U0ALICE", role, None, "team-a", None, reason)


# -- policy keys ------------------------------------------------------------------------


def test_the_keys_load_with_their_defaults() -> None:
    fix = POLICY.roles["fix"]
    assert fix.break_glass is not None
    assert fix.break_glass.ratify_within == dt.timedelta(minutes=15)
    assert fix.reason is not None
    assert fix.reason.pattern == "^[A-Z]+-[0-9]+"
    bare = parse_policy(with_role("edit", break_glass={}, reason={}))
    assert bare.roles["edit"].break_glass is not None
    assert bare.roles["edit"].break_glass.approvals == 1
    assert bare.roles["edit"].break_glass.ratify_within == dt.timedelta(minutes=15)
    assert bare.roles["edit"].reason is not None
    assert bare.roles["edit"].reason.required is True  # as for a role without the key


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"reason": {"pattern": "^[A-Z"}}, "roles.fix.reason.pattern: '^[A-Z' is not a valid"),
        ({"reason": {"patern": "x"}}, "roles.fix.reason.patern"),
        ({"reason": {"required": "maybe"}}, "roles.fix.reason.required"),
        ({"break_glass": {"ratify_within": "0s"}}, "roles.fix.break_glass.ratify_within"),
        ({"break_glass": {"ratify_within": "soon"}}, "roles.fix.break_glass.ratify_within"),
        ({"break_glass": {"approvals": 0}}, "roles.fix.break_glass.approvals"),
        ({"break_glass": {"aprovals": 1}}, "roles.fix.break_glass.aprovals"),
        ({"break_glass": {"approvals": 3}}, "roles.fix.break_glass.approvals: needs 3"),
    ],
)
def test_policy_errors_name_the_key(keys: dict[str, Any], expected: str) -> None:
    assert expected in problems(with_role("fix", **keys))


# -- reason rules -------------------------------------------------------------------------


def test_a_reason_missing_the_pattern_is_a_reason_problem_with_the_hint() -> None:
    with pytest.raises(RequestRejected) as info:
        resolve_request(POLICY, spec(reason="please, no ticket"))
    assert str(info.value) == HINT
    assert info.value.problems == {"reason": f"{HINT}."}


def test_the_pattern_is_searched_for_so_anchors_decide() -> None:
    assert resolve_request(POLICY, spec(reason="OPS-123 deploy")).reason == "OPS-123 deploy"
    with pytest.raises(RequestRejected):  # ^ anchors it at the start
        resolve_request(POLICY, spec(reason="deploy OPS-123"))
    loose = parse_policy(with_role("fix", reason={"pattern": "[A-Z]+-[0-9]+"}))
    assert resolve_request(loose, spec(reason="deploy OPS-123")).reason == "deploy OPS-123"


def test_required_false_allows_an_empty_reason_and_roles_without_the_key_keep_it() -> None:
    optional = parse_policy(with_role("fix", reason={"required": False}))
    assert resolve_request(optional, spec(reason="  ")).reason == ""
    with pytest.raises(RequestRejected) as info:
        resolve_request(POLICY, spec("edit", reason=""))
    assert set(info.value.problems) == {"reason"}


def test_recheck_holds_an_older_request_to_a_new_pattern() -> None:
    decided = resolve_request(POLICY, spec("edit", reason="no ticket"))
    stricter = parse_policy(with_role("edit", reason={"pattern": "^[A-Z]+-[0-9]+"}))
    with pytest.raises(RequestRejected, match=r"policy changed.*must match"):
        recheck_request(stricter, decided)


# -- break-glass request --------------------------------------------------------------------


def test_break_glass_needs_a_role_with_it_and_follows_the_request_rules() -> None:
    assert resolve_break_glass(POLICY, spec()).role == "fix"
    with pytest.raises(RequestRejected) as info:
        resolve_break_glass(POLICY, spec("edit"))
    assert "role edit has no break-glass access" in str(info.value)
    assert set(info.value.problems) == {"role"}
    with pytest.raises(RequestRejected, match="must match"):
        resolve_break_glass(POLICY, spec(reason="no ticket"))
    with pytest.raises(RequestRejected, match="protected"):
        resolve_break_glass(
            POLICY, AccessRequestSpec("U0ALICE", "fix", None, "kube-system", None, "OPS-1")
        )


# -- agenda and metric -----------------------------------------------------------------------

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


def taken(at: dt.datetime = T0, **glass: Any) -> Grant:
    g = Grant.model_validate({
        "id": "g1", "requester": "U0ALICE", "handle": "alice", "role": "fix", "cluster": "a",
        "namespace": "team-a", "scope": "namespace", "cluster_role": "edit",
        "duration_s": 3600, "reason": "OPS-1", "approvals_required": 0, "created_at": at,
        "pending_until": at + dt.timedelta(hours=24),
        "break_glass": BreakGlass(ratify_within_s=900, approvals_required=1, **glass),
    })  # fmt: skip
    g = g.moved(State.APPROVED, "U0ALICE", at).moved(State.PROVISIONING, "accessbot", at)
    active = g.moved(State.ACTIVE, "accessbot", at + dt.timedelta(seconds=5))
    return active.model_copy(update={"expires_at": at + dt.timedelta(hours=1)})


def test_an_unratified_grant_is_due_for_its_deadline_from_activation() -> None:
    step = next_step(taken(), POLICY, T0, Timing())
    assert step == NextStep(StepKind.RATIFY, T0 + dt.timedelta(minutes=15, seconds=5))


def test_a_ratified_grant_goes_on_to_its_reminder() -> None:
    g = taken(ratified_by=("U0LEAD",), ratified_at=T0 + dt.timedelta(minutes=1))
    step = next_step(g, POLICY, T0, Timing())
    assert step == NextStep(StepKind.REMIND, T0 + dt.timedelta(minutes=50))


def test_a_window_longer_than_the_grant_leaves_the_ordinary_steps() -> None:
    g = taken()
    glass = BreakGlass(ratify_within_s=7200, approvals_required=1)
    step = next_step(g.model_copy(update={"break_glass": glass}), POLICY, T0, Timing())
    assert step is not None
    assert step.kind == StepKind.REMIND


def test_the_metric_reads_ratified_and_revoked() -> None:
    g = taken()
    ratified = g.model_copy(
        update={"break_glass": BreakGlass(ratify_within_s=900, approvals_required=1,
                                          ratified_by=("U0LEAD",), ratified_at=T0)}
    )  # fmt: skip
    assert break_glass_outcome(g, ratified) == "ratified"
    assert break_glass_outcome(ratified, ratified) is None
    revoked = g.moved(State.REVOKED, "accessbot", T0 + dt.timedelta(minutes=16))
    assert break_glass_outcome(g, revoked) == "revoked"
    assert break_glass_outcome(revoked, revoked) is None


def test_the_form_reason_is_optional_only_when_a_role_says_so() -> None:
    from bot.slack.forms import request_modal

    def reason_block(policy: Any) -> dict[str, Any]:
        view = request_modal(policy)
        return next(b for b in view["blocks"] if b.get("block_id") == "reason")

    assert reason_block(POLICY)["optional"] is False
    optional = parse_policy(with_role("edit", reason={"required": False}))
    assert reason_block(optional)["optional"] is True


def test_two_ratifications_and_an_offboarded_ratifier_no_longer_counting() -> None:
    from bot.usecases.breakglass import Ratified, _ratification

    g = taken().model_copy(
        update={"break_glass": BreakGlass(ratify_within_s=900, approvals_required=2)}
    )
    now = T0 + dt.timedelta(minutes=5)
    outcome, change = _ratification(g, "U0LEAD", frozenset(), now)
    assert outcome == Ratified.RECORDED
    assert change is not None
    once = change.grant
    assert _ratification(once, "U0LEAD", frozenset(), now)[0] == Ratified.ALREADY_COUNTED
    # U0LEAD is offboarded before the second ratification: theirs no longer counts.
    outcome, change = _ratification(once, "U0BOSS", frozenset({"U0LEAD"}), now)
    assert outcome == Ratified.RECORDED
    assert change is not None
    assert change.grant.break_glass is not None
    assert change.grant.break_glass.ratified_by == ("U0BOSS",)
    outcome, change = _ratification(once, "U0BOSS", frozenset(), now)
    assert outcome == Ratified.RATIFIED
    # Past the deadline nothing counts.
    late = T0 + dt.timedelta(minutes=16)
    assert _ratification(once, "U0BOSS", frozenset(), late)[0] == Ratified.TOO_LATE
