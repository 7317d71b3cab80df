"""One DNS-label rule: the policy, the settings and the slash commands accept the same names.

The rule is Kubernetes' IsDNS1123Label (k8s.names); every place a user or an operator
gives a namespace or a cluster name must agree with it, with the same words.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.policy import DNS_LABEL_RULE, PolicyError, parse_policy
from bot.settings import ConfigError, Settings, bot_namespace
from bot.slack.command_scan import CommandError
from bot.slack.commands import parse_access, parse_k8s
from k8s.names import is_dns_label

POLICY = """\
approvals_channel: C0APPROVALS
admins: [U0ADMIN]
clusters:
  "{name}": {{context: a}}
roles:
  view: {{cluster_role: view, scope: namespace, max_duration: 1h, namespaces: ["team-*"]}}
"""

# Words without whitespace (a command splits on it), including the edge cases of
# the rule: a dash at either end, upper case, 63 and 64 characters, a trailing newline.
names = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=70),
    st.sampled_from(["a" * 63, "a" * 64, "-a", "a-", "a--b", "0", "UPPER", "tëam"]),
)


def settings_refusal(name: str) -> str | None:
    try:
        bot_namespace(Settings(accessbot_namespace=name), Path("/nonexistent"))
    except ConfigError as exc:
        return str(exc)
    return None


def commands_refusal(name: str) -> str | None:
    try:
        parse_access(f"request view --namespace={name} --cluster={name} because")
        parse_k8s(f"helm --namespace={name}")
    except CommandError as exc:
        return exc.problem
    return None


def policy_refusal(name: str) -> str | None:
    try:
        parse_policy(POLICY.format(name=name))
    except PolicyError as exc:
        return str(exc)
    return None


@given(names)
def test_every_entry_point_holds_names_to_the_one_rule(name: str) -> None:
    for refusal in (settings_refusal(name), commands_refusal(name), policy_refusal(name)):
        if is_dns_label(name):
            assert refusal is None
        else:
            assert refusal is not None
            assert DNS_LABEL_RULE in refusal


@pytest.mark.parametrize("name", ["team-a\n", "\nteam-a", "team-a\r"])
def test_a_line_break_is_never_part_of_a_name(name: str) -> None:
    assert not is_dns_label(name)
    with pytest.raises(ConfigError):
        bot_namespace(Settings(accessbot_namespace="x" + name.strip() + "\n-"), Path("/none"))
