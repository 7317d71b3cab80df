"""Hostile input never escapes as anything but the documented error.

The policy loader gets arbitrary text and arbitrary YAML-shaped documents; the
webhook body model gets arbitrary JSON. (The command parser has its own
never-crashes property in tests/slack/test_commands.py.)
"""

from __future__ import annotations

import json

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.http.app import OffboardBody
from bot.policy import PolicyError, parse_policy

KEYS = [
    "approvals_channel",
    "audit_channel",
    "admins",
    "clusters",
    "roles",
    "defaults",
    "context",
    "server",
    "namespace",
    "in_cluster",
    "cluster_role",
    "scope",
    "max_duration",
    "approvals",
    "approvers",
    "namespaces",
    "duration",
    "pending_ttl",
    "reminder_before",
    "prod",
    "view",
    "edit",
    "<<",
    "&a",
    "*a",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "1h",
            "4x",
            "-1m",
            "0s",
            "namespace",
            "cluster",
            "#chan",
            "@group",
            "U0ABC",
            "https://x:6443",
        ]
    ),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), inner, max_size=6),
    ),
    max_leaves=25,
)


@settings(max_examples=300)
@given(st.text(max_size=400))
def test_policy_loader_on_arbitrary_text(text: str) -> None:
    assert_problems_one_per_line(text)


@settings(max_examples=300)
@given(documents)
def test_policy_loader_on_arbitrary_documents(doc: object) -> None:
    assert_problems_one_per_line(yaml.safe_dump(doc))


def assert_problems_one_per_line(text: str) -> None:
    """The loader accepts the text or raises PolicyError, every line "FILE: ..."."""
    try:
        parse_policy(text, "fuzz.yaml")
    except PolicyError as exc:
        problems = str(exc).splitlines()
    else:
        return
    assert all(line.startswith("fuzz.yaml: ") for line in problems), problems


json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=15), inner, max_size=4)
    ),
    max_leaves=15,
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "email": st.one_of(st.emails(), st.text(max_size=40), st.integers()),
            "slack_user_id": st.one_of(
                st.from_regex(r"\A[UW][A-Z0-9]{2,20}\Z"), st.text(max_size=30)
            ),
            "reason": st.one_of(st.text(max_size=600), st.none()),
        },
    ),
)


@settings(max_examples=300)
@given(bodies)
def test_webhook_body_validation_on_arbitrary_json(body: object) -> None:
    raw = json.dumps(body)
    try:
        parsed = OffboardBody.model_validate(json.loads(raw))
    except ValidationError:
        return
    assert (parsed.email is None) != (parsed.slack_user_id is None)
    assert len(parsed.reason) <= 500
