"""Which SubjectAccessReview questions a receipt asks, derived from the role's rules."""

from __future__ import annotations

from k8s.grants import Review, representative_reviews
from k8s.rbac import Rule


def test_a_read_and_a_write_question_from_the_first_rules_that_have_them() -> None:
    rules = [
        Rule.of(["get", "list"], [""], ["pods", "pods/log"]),
        Rule.of(["create", "delete"], ["apps"], ["deployments"]),
        Rule.of(["patch"], [""], ["services"]),
    ]
    assert representative_reviews(rules, "team-a") == [
        Review("get", "pods", "", "team-a"),
        Review("create", "deployments", "apps", "team-a"),
    ]


def test_wildcards_become_concrete_questions() -> None:
    # cluster-admin: every verb on every resource of every group.
    rules = [Rule.of(["*"], ["*"], ["*"]), Rule.of(["*"], non_resource_urls=["*"])]
    assert representative_reviews(rules, None) == [
        Review("get", "pods", "", None),
        Review("delete", "pods", "", None),
    ]


def test_named_or_subresource_only_rules_are_skipped_and_there_is_always_a_question() -> None:
    rules = [
        Rule.of(["get"], [""], ["configmaps"], resource_names=["one"]),
        Rule.of(["get"], [""], ["pods/log"]),
    ]
    assert representative_reviews(rules, "team-a") == [Review("get", "pods", "", "team-a")]
    assert representative_reviews(None, None) == [Review("get", "pods", "", None)]


def test_a_review_reads_like_kubectl_auth_can_i() -> None:
    assert str(Review("get", "deployments", "apps", "team-a")) == "get deployments.apps -n team-a"
    assert str(Review("delete", "pods")) == "delete pods (cluster-wide)"
