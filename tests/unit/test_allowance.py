"""What a role allows, in words and flags: pure, and within Slack's limits."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.policy import parse_policy
from bot.slack.blocks import (
    PERMISSIONS_CHECKING,
    allowance_blocks,
    allowance_file,
    allowance_fits,
    roles_messages,
)
from k8s.rbac import CLUSTER_SCOPE, Rule, allowance_of, describe
from tests.slack.support import POLICY
from tests.support.slack_emulator import MESSAGE_BLOCK_LIMIT, block_errors

RW = ["get", "list", "watch", "create", "update", "patch", "delete"]
READ = ["get", "list", "watch"]


def test_summary_groups_resources_by_access_widest_first() -> None:
    rules = [
        Rule.of(RW, ["apps"], ["deployments"]),
        Rule.of(RW, [""], ["services", "configmaps"]),
        Rule.of(READ, [""], ["pods", "pods/log"]),
    ]
    assert describe(rules, namespaced=True) == [
        "read and write ConfigMaps, Deployments, Services",
        "read Pod logs, Pods",
        "no Secrets",
    ]


def test_secrets_wildcards_names_and_urls_are_said() -> None:
    rules = [
        Rule.of(["*"], ["*"], ["*"]),
        Rule.of(["get"], [""], ["configmaps"], ["app-config"]),
        Rule.of(["get"], non_resource_urls=["/healthz"]),
    ]
    clauses = describe(rules, namespaced=True)
    assert clauses[0] == "do anything with all resources"
    assert "get ConfigMaps (only app-config)" in clauses
    assert "non-resource URLs /healthz" in clauses
    assert "no Secrets" not in clauses  # '*' reads Secrets


def test_flags_put_blocking_risks_first_and_cluster_scope_last() -> None:
    rules = [
        Rule.of(["create"], [""], ["pods"]),
        Rule.of(["create"], [""], ["serviceaccounts/token"]),
    ]
    assert allowance_of("a", "r", rules, namespaced=True).flags == ["token-minting", "pod-create"]
    wide = allowance_of("a", "r", rules, namespaced=False)
    assert wide.flags == ["token-minting", "pod-create", CLUSTER_SCOPE]


def test_blocks_escape_cluster_text_and_show_every_flag() -> None:
    rules = [
        Rule.of(["get"], [""], ["secrets"], ["<!channel> *x*"]),
        Rule.of(["impersonate"], [""], ["users"]),
    ]
    allowance = allowance_of("a", "evil<role>", rules, namespaced=False)
    blocks = allowance_blocks(allowance, cluster_role="evil<role>", cluster="a", namespaced=False)
    assert block_errors(blocks, MESSAGE_BLOCK_LIMIT) == []
    text = json.dumps(blocks)
    assert "<!channel>" not in text
    assert "evil<role>" not in text
    summary = blocks[2]["text"]
    assert summary["type"] == "plain_text"  # resourceNames can hold anything
    flags = blocks[1]["text"]["text"]
    assert flags.index("impersonation") < flags.index("secrets-read") < flags.index("cluster-scope")


def test_checking_and_problems_are_said() -> None:
    checking = allowance_blocks(
        PERMISSIONS_CHECKING, cluster_role="edit", cluster="a", namespaced=True
    )
    assert "Permissions being checked" in json.dumps(checking)
    failed = allowance_blocks(
        "cluster a: API answered 503", cluster_role="edit", cluster="a", namespaced=True
    )
    assert "could not be checked" in json.dumps(failed)
    assert "503" in json.dumps(failed)
    missing = allowance_of("a", "gone", None, namespaced=True)
    assert "does not exist" in json.dumps(
        allowance_blocks(missing, cluster_role="gone", cluster="a", namespaced=True)
    )


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz<>&*_", min_size=1, max_size=60),
        min_size=1,
        max_size=400,
        unique=True,
    ),
    verb_sets=st.lists(st.sampled_from([READ, RW, ["get"], ["create"], ["bind"]]), min_size=1),
)
def test_any_role_fits_slack_and_the_file_has_everything(
    names: list[str], verb_sets: list[list[str]]
) -> None:
    rules = [
        Rule.of(verb_sets[i % len(verb_sets)], ["example.com"], [name])
        for i, name in enumerate(names)
    ]
    allowance = allowance_of("a", "big", rules, namespaced=True)
    blocks = allowance_blocks(allowance, cluster_role="big", cluster="a", namespaced=True)
    assert block_errors(blocks, MESSAGE_BLOCK_LIMIT) == []
    text = json.dumps(blocks)
    if not allowance_fits(allowance):
        assert "permissions-big-a.txt" in text
    content = allowance_file(allowance)
    assert all(name in content for name in names)


def test_roles_listing_splits_at_the_block_limit() -> None:
    policy = parse_policy(POLICY)
    rules = [Rule.of(RW, [""], ["pods"])]
    entries = [("view", allowance_of("a", "view", rules, namespaced=True))] * 40
    messages = roles_messages(policy, "a", entries)
    assert len(messages) > 1
    for message in messages:
        assert block_errors(message.blocks, MESSAGE_BLOCK_LIMIT) == []
    assert sum(json.dumps(m.blocks).count("ClusterRole") for m in messages) == 40


def test_access_roles_parses_and_refuses_bad_input() -> None:
    import pytest

    from bot.slack.commands import CommandError, Roles, parse_access

    assert parse_access("roles") == Roles()
    assert parse_access("roles -c a") == Roles("a")
    assert parse_access(Roles("a").text()) == Roles("a")
    for bad in ("roles -c a%2Fb", "roles extra", "roles -n x"):
        with pytest.raises(CommandError) as err:
            parse_access(bad)
        assert err.value.usage == "/access roles [-c CLUSTER]"
