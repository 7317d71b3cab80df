"""The standing-privilege classification and its chat shape, without a cluster."""

from __future__ import annotations

import json

from kubernetes import client

from bot.slack.blocks import standing_message
from k8s import rbac
from k8s.standing import (
    CERTIFICATE_NOTE,
    StandingEntry,
    binding_entries,
    build_report,
    token_secret_entry,
)

USERS = "accessbot-users"
ALL = [rbac.Rule.of(["*"], ["*"], ["*"])]
PODS = [rbac.Rule.of(["create"], [""], ["pods"])]
VIEW = [rbac.Rule.of(["get", "list"], [""], ["pods", "configmaps"])]
MANAGED = {"app.kubernetes.io/managed-by": "accessbot", "accessbot.io/grant-id": "g1"}
BOOTSTRAP = {"kubernetes.io/bootstrapping": "rbac-defaults"}


def subject(kind: str, name: str, namespace: str | None = None) -> client.RbacV1Subject:
    return client.RbacV1Subject(kind=kind, name=name, namespace=namespace)


def binding(
    name: str,
    role: str,
    subjects: list[client.RbacV1Subject],
    *,
    namespace: str | None = None,
    role_kind: str = "ClusterRole",
    labels: dict[str, str] | None = None,
) -> client.V1RoleBinding | client.V1ClusterRoleBinding:
    meta = client.V1ObjectMeta(name=name, namespace=namespace, labels=labels)
    ref = client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind=role_kind, name=role)
    if namespace is None:
        return client.V1ClusterRoleBinding(metadata=meta, role_ref=ref, subjects=subjects)
    return client.V1RoleBinding(metadata=meta, role_ref=ref, subjects=subjects)


def lines(*bindings: tuple[object, list[rbac.Rule] | None]) -> list[str]:
    entries = [e for b, r in bindings for e in binding_entries(b, r, users_namespace=USERS)]
    return [e.line for e in build_report("c", entries).entries]


def test_accessbot_grants_are_left_out_but_not_what_only_wears_the_label() -> None:
    grant = binding(
        "g1", "edit", [subject("ServiceAccount", "g1", USERS)], namespace="team-a", labels=MANAGED
    )
    assert lines((grant, PODS)) == []
    # The label is anyone's to set: a User, or a ServiceAccount elsewhere, is listed.
    disguised = binding(
        "g2",
        "edit",
        [subject("User", "mallory"), subject("ServiceAccount", "keep", "team-a")],
        namespace="team-a",
        labels=MANAGED,
    )
    found = lines((disguised, PODS))
    assert len(found) == 2
    assert "User mallory" in found[0] or "User mallory" in found[1]


def test_risk_order_and_what_is_not_privileged() -> None:
    found = lines(
        (binding("sa-view", "view", [subject("ServiceAccount", "mon", "ops")]), VIEW),
        (
            binding(
                "dev-pods", "pod-maker", [subject("Group", "devs")], namespace="x", role_kind="Role"
            ),
            PODS,
        ),
        (binding("ns-view", "view", [subject("User", "viewer")], namespace="x"), VIEW),
        (binding("root", "cluster-admin", [subject("User", "root")]), ALL),
        (
            binding("rbw", "rb-writer", [subject("User", "w")]),
            [rbac.Rule.of(["create"], ["rbac.authorization.k8s.io"], ["rolebindings"])],
        ),
    )
    tiers = [line.split(":")[0] for line in found]
    assert tiers == [
        "full control",
        "can keep or widen access",
        "workloads and Secrets",
        "ServiceAccount bound cluster-wide",
    ]
    assert "User viewer" not in " ".join(found)  # view in a namespace: not standing privilege
    assert "RoleBinding x/dev-pods (Role pod-maker)" in found[2]


def test_a_token_secret_sits_between_edit_level_and_plain_cluster_wide_bindings() -> None:
    token = token_secret_entry(
        {"name": "old", "namespace": "ci", "annotations": {rbac_sa(): "deployer"}}
    )
    edit = binding_entries(
        binding("e", "edit", [subject("Group", "g")], namespace="x"), PODS, users_namespace=USERS
    )
    bound = binding_entries(
        binding("b", "view", [subject("ServiceAccount", "s", "y")]), VIEW, users_namespace=USERS
    )
    report = build_report("c", [*bound, token, *edit])
    assert [e.tier for e in report.entries] == sorted(e.tier for e in report.entries)
    assert report.entries[1] == token
    assert "ServiceAccount ci/deployer via Secret ci/old" in token.line


def rbac_sa() -> str:
    return "kubernetes.io/service-account.name"


def test_built_in_bindings_apart_but_a_person_added_to_one_is_not() -> None:
    masters = binding(
        "cluster-admin",
        "cluster-admin",
        [subject("Group", "system:masters"), subject("User", "mallory")],
        labels=BOOTSTRAP,
    )
    entries = binding_entries(masters, ALL, users_namespace=USERS)
    report = build_report("c", entries)
    assert [e.subject for e in report.builtin] == ["Group system:masters"]
    assert [e.subject for e in report.entries] == ["User mallory"]
    assert "1 built into Kubernetes" in report.counts()
    text = report.render_text()
    assert text.index("User mallory") < text.index("Built into Kubernetes")
    assert CERTIFICATE_NOTE in text


def test_missing_cluster_admin_still_counts_and_names_are_inert() -> None:
    gone = binding("later", "cluster-admin", [subject("User", "eve\nfull control: fake")])
    (entry,) = binding_entries(gone, None, users_namespace=USERS)
    assert entry.tier == 0
    assert "(ClusterRole cluster-admin, missing)" in entry.line
    assert "\n" not in entry.line
    assert "\\x0a" in entry.line


def test_long_lists_keep_whole_lines_in_chat_and_everything_in_the_file() -> None:
    entries = [
        StandingEntry(
            tier=2,
            subject=f"User person-{i:04d}-" + "x" * 60,
            via="RoleBinding a/b",
            scope="namespace a",
        )
        for i in range(600)
    ]
    report = build_report("c", entries)
    all_lines = [e.line for e in report.entries]
    message, whole = standing_message(
        report.title, report.counts(), all_lines, [CERTIFICATE_NOTE], "standing-c.txt"
    )
    assert not whole
    shown = [
        line.removeprefix("• ")
        for b in message.blocks
        if b["type"] == "section" and b["text"]["type"] == "plain_text"
        for line in b["text"]["text"].split("\n")
    ][1:]  # the first section holds the counts
    assert shown
    assert shown == all_lines[: len(shown)]  # whole lines, in order, none cut
    assert len(json.dumps(message.blocks)) < 40_000
    assert "more line(s) in the file" in json.dumps(message.blocks)
    text = report.render_text()
    assert all(line in text for line in all_lines)
    assert report.counts()[0] == "600 workloads and Secrets"
