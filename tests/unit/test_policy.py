import string
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.durations import format_duration
from bot.policy import (
    AccessRequestSpec,
    Policy,
    PolicyError,
    RequestRejected,
    approvers_of,
    is_admin,
    is_dns_label,
    load_policy,
    may_approve,
    namespace_allowed,
    needs_approval,
    parse_policy,
    protected_namespace,
    protected_patterns,
    resolve_request,
    role_clusters,
)
from k8s.rbac import RISKS

# Verbatim from CONTRACT.md, "Policy file". Its view role predates the rule that a
# namespace-scoped role lists its namespaces, so CONTRACT_POLICY below adds ["*"].
CONTRACT_POLICY_VERBATIM = """\
approvals_channel: C0APPROVALS        # channel ID (or #name) where approval cards go
audit_channel: C0AUDIT                # optional: every state change is posted here
admins: ["U0ADMIN", "@platform-admins"]   # may revoke anyone's grant, list all
clusters:
  prod:
    context: prod-admin               # kubeconfig context used by the bot
    server: https://k8s.example:6443  # API URL written into issued kubeconfigs (default: the context's)
    namespace: accessbot-users        # where ServiceAccounts are created (default accessbot-users)
  staging: {context: staging}
roles:
  view:          {cluster_role: view, scope: namespace, max_duration: 8h, approvals: 0}
  edit:          {cluster_role: edit, scope: namespace, max_duration: 4h, approvals: 1,
                  approvers: ["@platform-leads"], namespaces: ["payments", "web-*"]}
  cluster-admin: {cluster_role: cluster-admin, scope: cluster, max_duration: 1h,
                  approvals: 2, approvers: ["@sre-oncall", "U0BOSS"], clusters: [staging]}
defaults: {duration: 1h, pending_ttl: 24h, reminder_before: 10m}
"""  # noqa: E501
CONTRACT_POLICY = CONTRACT_POLICY_VERBATIM.replace(
    "max_duration: 8h, approvals: 0}", 'max_duration: 8h, approvals: 0, namespaces: ["*"]}'
)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(CONTRACT_POLICY, "policy.yaml")


def policy_dict() -> dict[str, Any]:
    data = yaml.safe_load(CONTRACT_POLICY)
    assert isinstance(data, dict)
    return data


def problems_of(data: object) -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(yaml.safe_dump(data), "policy.yaml")
    return str(info.value)


def spec(role: str = "edit", **changes: Any) -> AccessRequestSpec:
    base = AccessRequestSpec(
        requester="U0ALICE",
        role=role,
        cluster="prod",
        namespace="payments",
        duration=None,
        reason="deploy hotfix",
    )
    return replace(base, **changes)


# --- loading ------------------------------------------------------------------------


def test_contract_example_loads(policy: Policy) -> None:
    assert policy.approvals_channel == "C0APPROVALS"
    assert policy.audit_channel == "C0AUDIT"
    assert list(policy.clusters) == ["prod", "staging"]
    assert policy.clusters["prod"].server == "https://k8s.example:6443"
    assert policy.clusters["staging"].namespace == "accessbot-users"
    assert policy.clusters["staging"].in_cluster is False
    edit = policy.roles["edit"]
    assert edit.max_duration == timedelta(hours=4)
    assert edit.approvers == ["@platform-leads"]
    assert edit.namespaces == ["payments", "web-*"]
    assert edit.clusters is None
    assert policy.roles["view"].namespaces == ["*"]
    assert policy.roles["cluster-admin"].clusters == ["staging"]
    assert policy.defaults.pending_ttl == timedelta(hours=24)
    assert policy.defaults.reminder_before == timedelta(minutes=10)


def test_models_are_frozen(policy: Policy) -> None:
    with pytest.raises(ValueError, match="frozen"):
        policy.roles["edit"].approvals = 0  # type: ignore[misc]


def test_minimal_policy_gets_defaults() -> None:
    policy = parse_policy(
        "approvals_channel: '#access'\n"
        "clusters: {dev: {in_cluster: true}}\n"
        "roles: {view: {cluster_role: view, scope: namespace, max_duration: 2h, approvals: 0,"
        " namespaces: [team-a]}}\n"
    )
    assert policy.defaults.duration == timedelta(hours=1)
    assert policy.roles["view"].approvers == []
    assert policy.admins == []
    assert policy.audit_channel is None


def test_load_policy_reads_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(CONTRACT_POLICY, encoding="utf-8")
    assert set(load_policy(path).roles) == {"view", "edit", "cluster-admin"}


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PolicyError, match=r"^policy\.yaml: file not found$"):
        load_policy(Path("policy.yaml"))


def test_missing_file_message_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(info.value) == f"{path}: file not found"


def test_bad_duration_message() -> None:
    text = CONTRACT_POLICY.replace("max_duration: 4h", "max_duration: 4x")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy.yaml")
    assert str(info.value) == (
        "policy.yaml: roles.edit.max_duration: invalid duration '4x' (use e.g. 30m, 2h, 1d, 1h30m)"
    )


def test_unknown_key_message() -> None:
    data = policy_dict()
    data["roles"]["view"]["colour"] = "red"
    assert problems_of(data).startswith("policy.yaml: roles.view.colour: unknown key")


def test_unknown_key_suggests_the_likely_one() -> None:
    data = policy_dict()
    data["roles"]["edit"]["aprovals"] = 2
    assert "roles.edit.aprovals: unknown key (did you mean 'approvals'?)" in problems_of(data)


@pytest.mark.parametrize("where", [(), ("defaults",), ("clusters", "prod"), ("roles", "view")])
def test_unknown_keys_rejected_at_every_level(where: tuple[str, ...]) -> None:
    data = policy_dict()
    target = data
    for key in where:
        target = target[key]
    target["zzz_unexpected"] = 1
    path = ".".join((*where, "zzz_unexpected"))
    assert f"policy.yaml: {path}: unknown key" in problems_of(data)


def test_unknown_cluster_reference() -> None:
    data = policy_dict()
    data["roles"]["cluster-admin"]["clusters"] = ["staging", "qa"]
    assert problems_of(data) == (
        "policy.yaml: roles.cluster-admin.clusters[1]: "
        "unknown cluster 'qa'; clusters: prod, staging"
    )


def test_several_problems_one_line_each() -> None:
    data = policy_dict()
    data["roles"]["view"]["max_duration"] = "soon"
    data["roles"]["edit"]["scope"] = "global"
    del data["clusters"]["prod"]["context"]
    lines = problems_of(data).splitlines()
    assert len(lines) == 3
    assert all(line.startswith("policy.yaml: ") for line in lines)
    assert any(line.startswith("policy.yaml: roles.edit.scope: must be") for line in lines)
    assert any("roles.view.max_duration: invalid duration 'soon'" in line for line in lines)
    assert any(line.startswith("policy.yaml: clusters.prod.context: ") for line in lines)
    with pytest.raises(PolicyError) as info:
        parse_policy(yaml.safe_dump(data), "policy.yaml")
    assert len(info.value.problems) == 3


def test_yaml_syntax_error_has_line_and_column() -> None:
    text = "approvals_channel: C0X\nclusters:\n  prod: {context: prod\nroles: {}\n"
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy.yaml")
    message = str(info.value)
    assert message.startswith("policy.yaml: line ")
    assert "column" in message
    assert "YAML syntax error" in message


def test_yaml_error_points_at_the_right_line() -> None:
    text = CONTRACT_POLICY.replace('approvers: ["@platform-leads"]', "approvers: [@platform-leads]")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "[@platform" in t)
    with pytest.raises(PolicyError, match=rf"^policy\.yaml: line {line}, column \d+: .*quote"):
        parse_policy(text, "policy.yaml")


def test_duplicate_keys_are_an_error() -> None:
    text = CONTRACT_POLICY + "admins: []\n"
    with pytest.raises(PolicyError, match=r"duplicate key 'admins' \(first at line 3\)"):
        parse_policy(text, "policy.yaml")


def test_yaml_merge_keys_still_work() -> None:
    text = (
        "approvals_channel: C0X\n"
        "clusters: {dev: {context: dev}}\n"
        "base: &base {cluster_role: view, scope: namespace, max_duration: 1h, approvals: 0,"
        " namespaces: ['*']}\n"
    )
    # "base" itself is an unknown key; the point is that "<<" plus an override parses.
    text += "roles: {view: {<<: *base, max_duration: 2h}}\n"
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    assert str(info.value).startswith("p.yaml: base: unknown key")


@pytest.mark.parametrize(("text", "problem"), [("", "empty"), ("- 1\n", "got a list")])
def test_top_level_must_be_a_mapping(text: str, problem: str) -> None:
    with pytest.raises(PolicyError, match=problem):
        parse_policy(text, "policy.yaml")


def test_unquoted_hash_channel_gets_a_hint() -> None:
    text = CONTRACT_POLICY.replace("approvals_channel: C0APPROVALS", "approvals_channel: #access")
    with pytest.raises(PolicyError, match=r"approvals_channel: .*quote"):
        parse_policy(text, "policy.yaml")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(clusters={}), "clusters: needs at least one entry"),
        (lambda d: d.update(roles={}), "roles: needs at least one entry"),
        (lambda d: d.pop("approvals_channel"), "approvals_channel: required key is missing"),
        (lambda d: d.update(approvals_channel="approvals"), "approvals_channel: 'approvals' is"),
        (lambda d: d.update(admins=["alice"]), "admins[0]: 'alice' is neither"),
        (lambda d: d["clusters"].update(Prod={"context": "p"}), "clusters.Prod: invalid cluster"),
        (
            lambda d: d["clusters"]["prod"].update(server="http://k8s:6443"),
            "clusters.prod.server: 'http://k8s:6443' is not an https:// URL",
        ),
        (
            lambda d: d["clusters"]["prod"].update(namespace="Users"),
            "clusters.prod.namespace: invalid namespace 'Users'",
        ),
        (
            lambda d: d["clusters"]["prod"].update(in_cluster=True),
            "clusters.prod.in_cluster: give either a context or in_cluster: true, not both",
        ),
        (
            lambda d: d["clusters"]["staging"].pop("context"),
            "clusters.staging.context: give a kubeconfig context, or set in_cluster: true",
        ),
        (
            lambda d: d["roles"]["view"].update(approvals=-1),
            "roles.view.approvals: must be greater than or equal to 0",
        ),
        (
            lambda d: d["roles"]["view"].update(approvals="two"),
            "roles.view.approvals: expected a whole number, got 'two'",
        ),
        (
            lambda d: d["roles"]["cluster-admin"].update(namespaces=["*"]),
            "roles.cluster-admin.namespaces: a cluster-scoped role takes no namespaces",
        ),
        (lambda d: d["roles"]["edit"].update(namespaces=[]), "roles.edit.namespaces: empty"),
        (
            lambda d: d["roles"]["edit"].update(namespaces=["Pay ments"]),
            "roles.edit.namespaces[0]: invalid namespace pattern",
        ),
        (lambda d: d["roles"]["edit"].update(clusters=[]), "roles.edit.clusters: empty"),
        (
            lambda d: d["roles"]["edit"].update(approvers=["@Platform"]),
            "roles.edit.approvers[0]: '@Platform' is neither",
        ),
        (
            lambda d: d["roles"].update({"bad role": d["roles"]["view"]}),
            "roles.'bad role': invalid role name",
        ),
        (lambda d: d["roles"]["view"].update(cluster_role="a/b"), "roles.view.cluster_role"),
        (lambda d: d.update(defaults={"duration": 0}), "defaults.duration: invalid duration"),
        (lambda d: d.update(defaults=5), "defaults: expected a mapping of keys, got 5"),
    ],
)
def test_invalid_policies(mutate: Any, expected: str) -> None:
    data = policy_dict()
    mutate(data)
    assert f"policy.yaml: {expected}" in problems_of(data)


def test_approvals_with_nobody_to_approve() -> None:
    data = policy_dict()
    data["admins"] = []
    data["roles"]["edit"]["approvers"] = []
    assert "policy.yaml: roles.edit.approvals: needs 1 approval(s) but nobody may approve" in (
        problems_of(data)
    )


def test_admins_alone_can_make_a_role_approvable() -> None:
    data = policy_dict()
    data["roles"]["edit"]["approvers"] = []
    assert parse_policy(yaml.safe_dump(data)).roles["edit"].approvers == []


def test_more_approvals_than_named_people() -> None:
    data = policy_dict()
    data["admins"] = ["U0ADMIN"]
    data["roles"]["cluster-admin"].update(approvals=3, approvers=["U0BOSS", "U0BOSS"])
    assert problems_of(data) == (
        "policy.yaml: roles.cluster-admin.approvals: needs 3 approvals but only 2 people "
        "may approve (U0ADMIN, U0BOSS)"
    )


def test_groups_make_approval_counts_unbounded() -> None:
    data = policy_dict()
    data["roles"]["cluster-admin"]["approvals"] = 9
    parse_policy(yaml.safe_dump(data))


# --- approvals ----------------------------------------------------------------------


def test_approvers_of(policy: Policy) -> None:
    assert approvers_of(policy, "cluster-admin") == (
        frozenset({"U0BOSS", "U0ADMIN"}),
        frozenset({"sre-oncall", "platform-admins"}),
    )
    assert approvers_of(policy, "cluster-admin", include_admins=False) == (
        frozenset({"U0BOSS"}),
        frozenset({"sre-oncall"}),
    )
    assert approvers_of(policy, "gone", include_admins=False) == (frozenset(), frozenset())


def test_may_approve(policy: Policy) -> None:
    assert may_approve(policy, "edit", "U0BOB", {"platform-leads"}, requester="U0ALICE")
    assert may_approve(policy, "edit", "U0BOB", ["@platform-leads"], requester="U0ALICE")
    assert not may_approve(policy, "edit", "U0BOB", {"sre-oncall"}, requester="U0ALICE")
    assert may_approve(policy, "cluster-admin", "U0BOSS", (), requester="U0ALICE")
    assert not may_approve(policy, "cluster-admin", "U0BOSS", (), requester="U0BOSS")


def test_admins_approve_any_role_even_removed_ones(policy: Policy) -> None:
    for role in ("view", "edit", "cluster-admin", "removed-role"):
        assert may_approve(policy, role, "U0ADMIN", (), requester="U0ALICE")
        assert may_approve(policy, role, "U0CAROL", {"platform-admins"}, requester="U0ALICE")
    assert not may_approve(policy, "removed-role", "U0BOSS", (), requester="U0ALICE")


def test_is_admin(policy: Policy) -> None:
    assert is_admin(policy, "U0ADMIN", ())
    assert is_admin(policy, "U0CAROL", {"platform-admins"})
    assert not is_admin(policy, "U0CAROL", {"platform-leads"})
    assert not is_admin(policy, "U0BOSS", ())


# --- properties ---------------------------------------------------------------------

user_ids = st.from_regex(r"U[A-Z0-9]{2,8}", fullmatch=True)
handles = st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}", fullmatch=True)
dns_labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
principals = st.one_of(user_ids, handles.map(lambda h: "@" + h))


@st.composite
def roles(draw: st.DrawFn, cluster_names: list[str]) -> dict[str, Any]:
    role: dict[str, Any] = {
        "cluster_role": draw(dns_labels),
        "scope": draw(st.sampled_from(["namespace", "cluster"])),
        "max_duration": draw(st.integers(60, 7 * 86_400)),
        "approvals": draw(st.integers(0, 3)),
        "approvers": draw(st.lists(principals, max_size=4)),
    }
    if role["scope"] == "namespace":
        role["namespaces"] = draw(
            st.lists(
                st.one_of(dns_labels, dns_labels.map(lambda p: p + "-*")).filter(
                    lambda p: p not in ("kube-system", "kube-public", "kube-node-lease")
                ),
                min_size=1,
            )
        )
    if draw(st.booleans()):
        role["clusters"] = draw(st.lists(st.sampled_from(cluster_names), min_size=1, unique=True))
    return role


# Building and validating a whole policy per example is slow on a busy machine; the
# examples are still generated in full, only the timing health check is off.
policy_examples = settings(suppress_health_check=[HealthCheck.too_slow])


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    cluster_names = draw(st.lists(dns_labels, min_size=1, max_size=4, unique=True))
    role_names = draw(st.lists(dns_labels, min_size=1, max_size=4, unique=True))
    data = {
        "approvals_channel": "C0APPROVALS",
        # A group admin keeps every generated role approvable by construction.
        "admins": [*draw(st.lists(principals, max_size=3)), "@admins"],
        "clusters": {name: {"context": name} for name in cluster_names},
        "roles": {name: draw(roles(cluster_names)) for name in role_names},
    }
    return Policy.model_validate(data)


@policy_examples
@given(policies(), st.data())
def test_self_approval_never_counts(policy: Policy, data: st.DataObject) -> None:
    role = data.draw(st.one_of(st.sampled_from(sorted(policy.roles)), dns_labels))
    everyone = [p for r in policy.roles.values() for p in r.approvers] + policy.admins
    requester = data.draw(st.one_of(st.sampled_from(everyone), user_ids).filter(_is_user))
    groups = data.draw(st.lists(st.one_of(st.sampled_from(everyone), handles)))
    assert not may_approve(policy, role, requester, groups, requester)


def _is_user(principal: str) -> bool:
    return not principal.startswith("@")


@policy_examples
@given(policies(), st.data())
def test_named_approvers_and_admins_may_approve_others(policy: Policy, data: st.DataObject) -> None:
    role = data.draw(st.sampled_from(sorted(policy.roles)))
    approver = data.draw(st.sampled_from([*policy.roles[role].approvers, *policy.admins]))
    user, groups = (approver, ()) if _is_user(approver) else ("U0SOMEONE", (approver[1:],))
    assert may_approve(policy, role, user, groups, requester="U0REQUESTER")


def _valid_spec(policy: Policy, role: str, data: st.DataObject) -> AccessRequestSpec:
    """A request the policy allows, built rather than searched for."""
    config = policy.roles[role]
    namespace = None
    if config.scope == "namespace":
        pattern = data.draw(st.sampled_from(config.namespaces))
        namespace = pattern.replace("*", data.draw(dns_labels))
        assert namespace_allowed(config.namespaces, namespace)
        assume(protected_namespace(policy, "", namespace) is None)
    return AccessRequestSpec(
        requester="U0ALICE",
        role=role,
        cluster=data.draw(st.sampled_from(role_clusters(policy, role))),
        namespace=namespace,
        duration=None,
        reason="because",
    )


@policy_examples
@given(policies(), st.data(), st.integers(1, 10**6))
def test_durations_above_max_are_rejected_naming_the_max(
    policy: Policy, data: st.DataObject, extra: int
) -> None:
    role = data.draw(st.sampled_from(sorted(policy.roles)))
    config = policy.roles[role]
    base = _valid_spec(policy, role, data)
    too_long = config.max_duration + timedelta(seconds=extra)
    with pytest.raises(RequestRejected) as info:
        resolve_request(policy, replace(base, duration=too_long))
    assert f"the {format_duration(config.max_duration)} maximum for role {role}" in str(info.value)
    ok = data.draw(st.integers(1, int(config.max_duration.total_seconds())))
    assert resolve_request(policy, replace(base, duration=timedelta(seconds=ok))).duration <= (
        config.max_duration
    )


@policy_examples
@given(policies(), dns_labels)
def test_unknown_role_lists_roles(policy: Policy, role: str) -> None:
    assume(role not in policy.roles)
    with pytest.raises(RequestRejected) as info:
        resolve_request(policy, spec(role))
    assert ", ".join(sorted(policy.roles)) in str(info.value)


@policy_examples
@given(policies(), st.data(), dns_labels)
def test_unknown_or_disallowed_cluster_lists_the_roles_clusters(
    policy: Policy, data: st.DataObject, cluster: str
) -> None:
    role = data.draw(st.sampled_from(sorted(policy.roles)))
    allowed = role_clusters(policy, role)
    assume(cluster not in allowed)
    base = _valid_spec(policy, role, data)
    with pytest.raises(RequestRejected) as info:
        resolve_request(policy, replace(base, cluster=cluster))
    assert ", ".join(allowed) in str(info.value)


@policy_examples
@given(policies(), st.data(), dns_labels)
def test_disallowed_namespace_lists_the_patterns(
    policy: Policy, data: st.DataObject, namespace: str
) -> None:
    names = sorted(n for n, r in policy.roles.items() if r.scope == "namespace")
    assume(names)
    role = data.draw(st.sampled_from(names))
    config = policy.roles[role]
    assume(not namespace_allowed(config.namespaces, namespace))
    assume(protected_namespace(policy, "", namespace) is None)
    base = _valid_spec(policy, role, data)
    with pytest.raises(RequestRejected) as info:
        resolve_request(policy, replace(base, namespace=namespace))
    assert ", ".join(config.namespaces) in str(info.value)


@policy_examples
@given(policies(), st.data())
def test_resolved_requests_obey_the_policy(policy: Policy, data: st.DataObject) -> None:
    role = data.draw(st.sampled_from(sorted(policy.roles)))
    resolved = resolve_request(policy, _valid_spec(policy, role, data))
    config = policy.roles[role]
    assert resolved.duration <= config.max_duration
    assert resolved.cluster in role_clusters(policy, role)
    assert (resolved.namespace is None) == (config.scope == "cluster")
    assert needs_approval(resolved) == (config.approvals > 0)


# --- namespace globs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "namespace", "allowed"),
    [
        (["*"], "anything", True),
        (["payments", "web-*"], "payments", True),
        (["payments", "web-*"], "web-frontend", True),
        (["payments", "web-*"], "web", False),
        (["payments", "web-*"], "payments-2", False),
        (["team-?"], "team-a", True),
        (["team-?"], "team-ab", False),
        (["team-[ab]"], "team-b", True),
        (["team-[!ab]"], "team-b", False),
        ([], "payments", False),
    ],
)
def test_namespace_glob_examples(patterns: list[str], namespace: str, allowed: bool) -> None:
    assert namespace_allowed(patterns, namespace) is allowed


@given(dns_labels, dns_labels)
def test_namespace_glob_properties(prefix: str, namespace: str) -> None:
    assert namespace_allowed(["*"], namespace)
    assert namespace_allowed([namespace], namespace)
    assert namespace_allowed([prefix + "*"], prefix + namespace)
    assert namespace_allowed([prefix + "*"], namespace) == namespace.startswith(prefix)


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_.", max_size=70))
def test_dns_label_rule(text: str) -> None:
    expected = (
        0 < len(text) <= 63
        and all(c in string.ascii_lowercase + string.digits + "-" for c in text)
        and text[0] != "-"
        and text[-1] != "-"
    )
    assert is_dns_label(text) == expected


def test_reports_access_defaults_to_everyone_and_accepts_approvers() -> None:
    text = CONTRACT_POLICY
    assert parse_policy(text).reports == "everyone"
    assert parse_policy(text + "reports: approvers\n").reports == "approvers"
    with pytest.raises(PolicyError, match="reports: must be 'everyone' or 'approvers'"):
        parse_policy(text + "reports: nobody\n", "p.yaml")


# --- protected namespaces and accepted risks ---------------------------------------

FIXED_PROTECTED = ("kube-system", "kube-public", "kube-node-lease", "accessbot-users")


def test_contract_example_verbatim_names_the_role_without_namespaces() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(CONTRACT_POLICY_VERBATIM, "policy.yaml")
    assert str(info.value).startswith("policy.yaml: roles.view.namespaces: required")
    assert len(info.value.problems) == 1


def test_empty_namespaces_is_an_error() -> None:
    data = policy_dict()
    data["roles"]["edit"]["namespaces"] = []
    assert "roles.edit.namespaces: empty" in problems_of(data)


@pytest.mark.parametrize("namespace", FIXED_PROTECTED)
def test_always_protected_even_for_star(policy: Policy, namespace: str) -> None:
    with pytest.raises(RequestRejected) as info:
        resolve_request(policy, spec("view", namespace=namespace))
    message = str(info.value)
    assert message.startswith(f"namespace {namespace} is protected: ")
    assert "never grants access there" in message


def test_users_namespace_of_every_cluster_is_protected_everywhere() -> None:
    data = policy_dict()
    data["clusters"]["staging"]["namespace"] = "grants-staging"
    policy = parse_policy(yaml.safe_dump(data))
    for cluster in ("prod", "staging"):
        with pytest.raises(RequestRejected, match="holds the ServiceAccounts of every"):
            resolve_request(policy, spec("view", cluster=cluster, namespace="grants-staging"))
    assert "grants-staging" in protected_patterns(policy, "prod")


def test_bot_namespace_is_protected() -> None:
    policy = parse_policy(CONTRACT_POLICY, bot_namespace="platform-bots")
    with pytest.raises(RequestRejected, match="namespace platform-bots is protected: AccessBot"):
        resolve_request(policy, spec("view", namespace="platform-bots"))
    # Without a bot namespace the same name is an ordinary one.
    plain = parse_policy(CONTRACT_POLICY)
    assert resolve_request(plain, spec("view", namespace="platform-bots")).namespace


def test_policy_protected_patterns() -> None:
    data = policy_dict()
    data["protected_namespaces"] = ["infra-*", "monitoring", "sec-[ab]"]
    policy = parse_policy(yaml.safe_dump(data))
    for namespace in ("infra-dns", "monitoring", "sec-a"):
        with pytest.raises(RequestRejected) as info:
            resolve_request(policy, spec("view", namespace=namespace))
        assert f"namespace {namespace} is protected by the policy (" in str(info.value)
    assert resolve_request(policy, spec("view", namespace="sec-c")).namespace == "sec-c"
    assert resolve_request(policy, spec("view", namespace="infra")).namespace == "infra"


def test_protected_namespaces_are_validated() -> None:
    data = policy_dict()
    data["protected_namespaces"] = ["Infra_*"]
    assert "protected_namespaces[0]: invalid namespace pattern 'Infra_*'" in problems_of(data)


@pytest.mark.parametrize("namespace", [*FIXED_PROTECTED, "secret-ns"])
def test_a_role_listing_a_protected_name_is_a_policy_error(namespace: str) -> None:
    data = policy_dict()
    data["protected_namespaces"] = ["secret-*"]
    data["roles"]["edit"]["namespaces"] = ["payments", namespace]
    problems = problems_of(data)
    assert f"roles.edit.namespaces[1]: namespace {namespace} is protected" in problems
    assert "it can never be granted" in problems


def test_a_role_listing_the_bot_namespace_is_a_policy_error() -> None:
    text = CONTRACT_POLICY.replace('namespaces: ["payments"', 'namespaces: ["accessbot"')
    assert parse_policy(text).roles["edit"].namespaces[0] == "accessbot"
    with pytest.raises(PolicyError, match=r"roles\.edit\.namespaces\[0\]: namespace accessbot"):
        parse_policy(text, bot_namespace="accessbot")


def test_accepts_risks() -> None:
    data = policy_dict()
    data["roles"]["edit"]["accepts_risks"] = list(RISKS)
    assert parse_policy(yaml.safe_dump(data)).roles["edit"].accepts_risks == list(RISKS)
    data["roles"]["edit"]["accepts_risks"] = ["token-minting", "tokens"]
    problems = problems_of(data)
    assert "roles.edit.accepts_risks[1]: unknown risk 'tokens'; risks: token-minting," in problems
    assert "wildcard" in problems


def test_risk_names_are_the_contract_ones() -> None:
    assert " ".join(RISKS) == (
        "token-minting impersonation escalation rbac-write pod-create exec secrets-read "
        "node-proxy wildcard"
    )


# Patterns as an operator writes them: names, prefixes, suffixes, ? and classes.
pattern_parts = st.one_of(dns_labels, st.just("*"), st.just("?"), st.just("[a-c]"))
patterns = (
    st.lists(pattern_parts, min_size=1, max_size=4).map("".join).filter(lambda p: len(p) <= 63)
)


def _instance(pattern: str, data: st.DataObject) -> str:
    """A namespace name the glob ``pattern`` matches."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern[i] == "*":
            out += data.draw(st.sampled_from(["", "x", "a-1", "team"]))
        elif pattern[i] == "?":
            out += data.draw(st.sampled_from("a0z"))
        elif pattern.startswith("[a-c]", i):
            out += data.draw(st.sampled_from("abc"))
            i += 4
        else:
            out += pattern[i]
        i += 1
    return out


@given(st.lists(patterns, min_size=1, max_size=3), st.data())
def test_any_namespace_a_protected_pattern_matches_is_refused(
    protected: list[str], data: st.DataObject
) -> None:
    raw = policy_dict()
    raw["protected_namespaces"] = protected
    raw["roles"]["edit"]["namespaces"] = ["*"]  # a literal there might be protected now
    policy = parse_policy(yaml.safe_dump(raw))
    namespace = _instance(data.draw(st.sampled_from(protected)), data)
    assume(is_dns_label(namespace))
    with pytest.raises(RequestRejected) as info:
        resolve_request(policy, spec("view", namespace=namespace))
    assert str(info.value).startswith(f"namespace {namespace} is protected")


@policy_examples
@given(policies(), st.data(), dns_labels, st.sampled_from(["namespace", "kube"]))
def test_no_resolved_request_lands_in_a_protected_namespace(
    policy: Policy, data: st.DataObject, namespace: str, shape: str
) -> None:
    """Whatever the role's patterns, a granted namespace is never a protected one."""
    names = sorted(n for n, r in policy.roles.items() if r.scope == "namespace")
    assume(names)
    role = data.draw(st.sampled_from(names))
    if shape == "kube":
        namespace = data.draw(st.sampled_from([*FIXED_PROTECTED, *_users_namespaces(policy)]))
    raw = policy.model_dump(exclude_unset=True)
    raw["roles"][role]["namespaces"] = ["*"]
    widened = Policy.model_validate(raw)
    request = replace(_valid_spec(widened, role, data), namespace=namespace)
    if shape == "kube":
        with pytest.raises(RequestRejected, match=f"^namespace {namespace} is protected: "):
            resolve_request(widened, request)
        return
    try:
        resolved = resolve_request(widened, request)
    except RequestRejected:
        # Refused only because it is protected: the role itself allows "*".
        assert namespace_allowed(protected_patterns(widened, request.cluster or ""), namespace)
        return
    assert resolved.namespace == namespace
    assert not namespace_allowed(protected_patterns(widened, resolved.cluster), namespace)


def _users_namespaces(policy: Policy) -> list[str]:
    return [c.namespace for c in policy.clusters.values()]


@given(st.lists(st.sampled_from(RISKS), unique=True), st.text(max_size=20))
def test_accepts_risks_takes_exactly_the_risk_names(accepted: list[str], other: str) -> None:
    data = policy_dict()
    data["roles"]["edit"]["accepts_risks"] = accepted
    assert parse_policy(yaml.safe_dump(data)).roles["edit"].accepts_risks == accepted
    assume(other not in RISKS)
    data["roles"]["edit"]["accepts_risks"] = [*accepted, other]
    assert f"roles.edit.accepts_risks[{len(accepted)}]: unknown risk" in problems_of(data)


@pytest.mark.parametrize(
    "pattern", ["x[!]y", "x[]y", "a]b", "a[b", "sec-[z-a]", "[a-c-e]", "[a--]"]
)
def test_a_glob_the_guard_would_read_otherwise_is_a_policy_error(pattern: str) -> None:
    # The chart's admission policy turns each pattern into an RE2 regex; a stray or empty
    # set, or a range out of order, would make that regex fail and refuse every grant.
    for where in ("protected_namespaces", "role"):
        data = policy_dict()
        if where == "role":
            data["roles"]["edit"]["namespaces"] = ["payments", pattern]
        else:
            data["protected_namespaces"] = [pattern]
        assert f"invalid namespace pattern {pattern!r}" in problems_of(data)


@pytest.mark.parametrize("pattern", ["sec-[ab]", "sec-[!x]", "u-[a-c]*", "[-a]x", "[a-]x", "t?-*"])
def test_well_formed_globs_are_accepted(pattern: str) -> None:
    data = policy_dict()
    data["protected_namespaces"] = [pattern]
    assert parse_policy(yaml.safe_dump(data)).protected_namespaces == [pattern]
