"""slack-app-manifest.yaml matches what the bot actually listens to and calls."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "slack-app-manifest.yaml"
SLACK_APP = REPO / "bot" / "slack" / "app.py"
SLACK_CODE = REPO / "bot" / "slack"

# Web API methods the bot calls, and the bot-token scope each needs.
METHOD_SCOPES = {
    "chat_postMessage": "chat:write",
    "chat_update": "chat:write",
    "conversations_open": "im:write",
    "files_upload_v2": "files:write",
    # A bot may delete the files it uploaded (the kubeconfig, when the grant ends).
    "files_delete": "files:write",
    "users_info": "users:read",
    "users_lookupByEmail": "users:read.email",
    "usergroups_list": "usergroups:read",
    "usergroups_users_list": "usergroups:read",
}
NO_SCOPE_METHODS = {"views_open", "views_update", "views_publish", "auth_test"}


def manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return data


def registered(kind: str) -> set[str]:
    return set(re.findall(rf'app\.{kind}\("([^"]+)"\)', SLACK_APP.read_text()))


def test_scopes_are_exactly_what_the_bot_needs() -> None:
    scopes = manifest()["oauth_config"]["scopes"]["bot"]
    assert sorted(scopes) == sorted(
        ["commands", "chat:write", "im:write", "files:write", "users:read", "users:read.email",
         "usergroups:read"]
    )  # fmt: skip
    called = set()
    for path in SLACK_CODE.rglob("*.py"):
        called |= set(re.findall(r"client\.(\w+)\(", path.read_text()))
    unknown = called - set(METHOD_SCOPES) - NO_SCOPE_METHODS
    assert not unknown, f"Slack methods without a known scope: {unknown}"
    assert {METHOD_SCOPES[m] for m in called if m in METHOD_SCOPES} | {"commands"} == set(scopes)


# Bot events and the scope Slack requires to subscribe to each (Slack's event docs).
EVENT_SCOPES = {
    "app_home_opened": None,
    "user_change": "users:read",
    "subteam_created": "usergroups:read",
    "subteam_updated": "usergroups:read",
    "subteam_members_changed": "usergroups:read",
}


def test_every_event_has_its_scope() -> None:
    m = manifest()
    scopes = set(m["oauth_config"]["scopes"]["bot"])
    for event in m["settings"]["event_subscriptions"]["bot_events"]:
        assert event in EVENT_SCOPES, f"scope of {event} unknown"
        needed = EVENT_SCOPES[event]
        assert needed is None or needed in scopes, f"{event} needs {needed}"


def test_commands_and_events_match_the_listeners() -> None:
    m = manifest()
    commands = {c["command"]: c for c in m["features"]["slash_commands"]}
    assert set(commands) == registered("command") == {"/access", "/k8s"}
    events = set(m["settings"]["event_subscriptions"]["bot_events"])
    assert (
        events
        == registered("event")
        == {
            "app_home_opened",
            "user_change",
            "subteam_created",
            "subteam_updated",
            "subteam_members_changed",
        }
    )
    for command in commands.values():
        assert len(command["description"]) <= 100
        assert command["should_escape"] is False  # the bot parses raw text


def test_every_request_url_is_the_one_events_endpoint() -> None:
    m = manifest()
    urls = [c["url"] for c in m["features"]["slash_commands"]]
    urls.append(m["settings"]["event_subscriptions"]["request_url"])
    assert m["settings"]["interactivity"]["is_enabled"] is True
    urls.append(m["settings"]["interactivity"]["request_url"])
    assert len(set(urls)) == 1
    assert re.fullmatch(r"https://[a-z0-9.-]+/slack/events", urls[0])


def test_app_home_and_display_information() -> None:
    m = manifest()
    home = m["features"]["app_home"]
    assert home["home_tab_enabled"] is True
    assert home["messages_tab_enabled"] is True  # kubeconfigs arrive as DMs
    info = m["display_information"]
    assert info["name"] == "AccessBot"
    assert len(info["description"]) <= 140  # Slack's limits
    assert 174 <= len(info["long_description"]) <= 4000
    assert re.fullmatch(r"#[0-9a-f]{6}", info["background_color"])
    assert m["features"]["bot_user"]["display_name"]
    assert m["settings"]["socket_mode_enabled"] is False  # HTTP mode as pasted
