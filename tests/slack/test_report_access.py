"""Who may run /k8s nodes and /k8s helm: the pure rule (bot.policy.may_run_reports)."""

from __future__ import annotations

from bot.policy import may_run_reports, parse_policy
from tests.slack.support import POLICY

POL = parse_policy(POLICY)


def test_everyone_lets_any_member_run_them() -> None:
    assert may_run_reports(POL, "everyone", "U0BOB", frozenset())


def test_approvers_lets_admins_and_role_approvers_only() -> None:
    assert may_run_reports(POL, "approvers", "U0ADMIN", frozenset())  # an admin
    assert may_run_reports(POL, "approvers", "U0LEAD", frozenset())  # named approver of edit
    assert may_run_reports(POL, "approvers", "U0PL1", frozenset({"platform-leads"}))
    assert may_run_reports(POL, "approvers", "U0SRE1", frozenset({"sre"}))
    assert not may_run_reports(POL, "approvers", "U0BOB", frozenset())
    assert not may_run_reports(POL, "approvers", "U0BOB", frozenset({"some-other-group"}))
