"""The /access and /k8s parser: examples, mistakes, and properties."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.slack import commands as cmd
from bot.slack.command_scan import CommandError
from bot.slack.commands import USAGE, parse_access, parse_k8s


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", cmd.OpenModal()),
        ("   ", cmd.OpenModal()),
        (
            "request edit -n team-a -d 2h fixing checkout",
            cmd.Request("edit", "fixing checkout", namespace="team-a", duration=timedelta(hours=2)),
        ),
        (
            "request edit -c prod -n payments -d 1h30m roll back   the  deploy",
            cmd.Request(
                "edit",
                "roll back   the  deploy",
                cluster="prod",
                namespace="payments",
                duration=timedelta(minutes=90),
            ),
        ),
        ("REQUEST view why not", cmd.Request("view", "why not")),
        (
            "request -c a view --namespace=x reason",
            cmd.Request("view", "reason", cluster="a", namespace="x"),
        ),
        (
            "request view -- -n is part of the reason",
            cmd.Request("view", "-n is part of the reason"),
        ),
        ("request view fix -n in text", cmd.Request("view", "fix -n in text")),
        ("request view - dash first", cmd.Request("view", "- dash first")),
        ("list", cmd.ListGrants(False)),
        ("list --all", cmd.ListGrants(True)),
        ("revoke abc123", cmd.Revoke("abc123")),
        ("extend abc123 -d 30m", cmd.Extend("abc123", timedelta(minutes=30))),
        ("extend -d 1d abc123", cmd.Extend("abc123", timedelta(days=1))),
        ("help", cmd.Help("access")),
    ],
)
def test_access_examples(text: str, expected: object) -> None:
    assert parse_access(text) == expected


@pytest.mark.parametrize(
    ("text", "problem", "usage"),
    [
        ("request", "give the role", "request"),
        ("request edit", "give a reason", "request"),
        ("request edit -n", "-n needs a value", "request"),
        ("request edit -n -d 1h x", "-n needs a value", "request"),
        ("request edit -d 2x fix", "invalid duration '2x'", "request"),
        ("request edit -d 0m fix", "longer than zero", "request"),
        ("request edit -x 1 fix", "unknown option '-x'", "request"),
        ("request edit -c a -c b fix", "-c given twice", "request"),
        ("list everything", "unexpected 'everything'", "list"),
        ("revoke", "give the id", "revoke"),
        ("revoke a b", "unexpected 'b'", "revoke"),
        ("extend abc", "say by how much", "extend"),
        ("extend -d 1h", "give the id", "extend"),
        ("help me", "unexpected 'me'", "help"),
    ],
)
def test_access_mistakes_carry_the_usage_line(text: str, problem: str, usage: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_access(text)
    assert problem in caught.value.problem
    assert caught.value.usage == USAGE[usage]
    assert USAGE[usage] in str(caught.value)


def test_unknown_subcommand_shows_every_usage() -> None:
    with pytest.raises(CommandError) as caught:
        parse_access("grant me root")
    assert "unknown subcommand 'grant'" in caught.value.problem
    assert all(USAGE[k] in caught.value.usage for k in ("request", "list", "revoke", "extend"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", cmd.Help("k8s")),
        ("help", cmd.Help("k8s")),
        ("nodes", cmd.Nodes()),
        ("nodes -c prod", cmd.Nodes("prod")),
        ("helm", cmd.Helm()),
        ("helm -A", cmd.Helm()),
        ("helm -c prod -n web", cmd.Helm("prod", "web")),
        ("helm --all-namespaces -c a", cmd.Helm("a")),
        ("standing", cmd.Standing()),
        ("standing -c prod", cmd.Standing("prod")),
        ("standing --cluster=prod", cmd.Standing("prod")),
    ],
)
def test_k8s_examples(text: str, expected: object) -> None:
    assert parse_k8s(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("pods", "unknown subcommand 'pods'"),
        ("helm -n web -A", "not both"),
        ("nodes extra", "unexpected 'extra'"),
        ("nodes -n x", "unknown option '-n'"),
        ("standing -n x", "unknown option '-n'"),
        ("standing everything", "unexpected 'everything'"),
    ],
)
def test_k8s_mistakes(text: str, problem: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_k8s(text)
    assert problem in caught.value.problem


# Whatever a user types as a name is checked before it can reach a URL or a key.
_BAD_NAMES = ["a%2Fb", "../x", "a/b", "A", "-1", "x-", "a.b", "a\u200b", "x" * 64,
              "%2e%2e", "kube-system/secrets", "a?b", "a#b", "ns\\x"]  # fmt: skip


@pytest.mark.parametrize("name", _BAD_NAMES)
def test_names_are_validated_before_use(name: str) -> None:
    for text, parse in [
        (f"helm -n {name}", parse_k8s),
        (f"helm -c {name}", parse_k8s),
        (f"helm --namespace={name}", parse_k8s),
        (f"nodes -c {name}", parse_k8s),
        (f"standing -c {name}", parse_k8s),
        (f"request view -n {name} why", parse_access),
        (f"request view -c {name} why", parse_access),
    ]:
        with pytest.raises(CommandError) as caught:
            parse(text)
        assert caught.value.problem.startswith("invalid "), text
        assert "lowercase letters, digits and '-'" in caught.value.problem


@pytest.mark.parametrize("grant_id", ["a/b", "../x", "x" * 65, "a:b", "*", "a%2Fb"])
def test_grant_ids_are_validated(grant_id: str) -> None:
    for text in (f"revoke {grant_id}", f"extend {grant_id} -d 1h"):
        with pytest.raises(CommandError, match="invalid grant id"):
            parse_access(text)
    with pytest.raises(CommandError, match="invalid role"):
        parse_access(f"request {grant_id} why")


def test_long_bad_names_are_echoed_short() -> None:
    with pytest.raises(CommandError) as caught:
        parse_k8s("helm -n " + "%" * 5000)
    assert len(caught.value.problem) < 200


# -- properties -------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.text())
def test_parsers_never_crash(text: str) -> None:
    for parse in (parse_access, parse_k8s):
        try:
            parse(text)
        except CommandError as exc:
            usage = exc.usage
            assert usage


_word = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,20}[a-z0-9])?", fullmatch=True)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_grant_id = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
_durations = st.integers(min_value=1, max_value=10 * 86_400).map(lambda s: timedelta(seconds=s))
_reason = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=200,
).filter(lambda r: r.strip() == r and r.strip() != "")


@given(
    role=_word,
    reason=_reason,
    cluster=st.none() | _label,
    namespace=st.none() | _label,
    duration=st.none() | _durations,
)
def test_request_round_trips(
    role: str, reason: str, cluster: str | None, namespace: str | None, duration: timedelta | None
) -> None:
    command = cmd.Request(role, reason, cluster=cluster, namespace=namespace, duration=duration)
    assert parse_access(command.text()) == command


@given(
    st.one_of(
        st.builds(cmd.ListGrants, st.booleans()),
        st.builds(cmd.Revoke, _grant_id),
        st.builds(cmd.Extend, _grant_id, _durations),
        st.just(cmd.Help("access")),
    )
)
def test_other_access_commands_round_trip(command: object) -> None:
    assert parse_access(command.text()) == command  # type: ignore[attr-defined]


@given(
    st.one_of(
        st.builds(cmd.Nodes, st.none() | _label),
        st.builds(cmd.Helm, st.none() | _label, st.none() | _label),
    )
)
def test_k8s_commands_round_trip(command: cmd.Nodes | cmd.Helm) -> None:
    assert parse_k8s(command.text()) == command
