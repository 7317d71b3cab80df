"""What a grant allows, shown before Approve: cards, the request form and ``/access roles``.

Real apiserver (its bootstrap ``edit`` and the chart's curated roles), real Redis,
the Slack emulator; every request is signed as Slack signs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.slack.support import APPROVALS, SlackBed, slack_bed
from tests.support.cluster import TestCluster, combined_kubeconfig
from tests.support.curated_roles import apply_cluster_role, curated_roles
from tests.support.slack_emulator import RecordedCall
from tests.support.slack_signing import _payload_form, static_select
from tests.support.slow_proxy import SlowProxy

pytestmark = pytest.mark.cluster

TUNED = "allows-test-tuned"
HUGE = "allows-test-huge"
HUGE_RESOURCES = [f"widget{i:03d}s" for i in range(300)]
POLICY = f"""
approvals_channel: C0APPROVALS
audit_channel: C0AUDIT
admins: ["U0ADMIN"]
clusters:
  a: {{context: a}}
  b: {{context: b}}
roles:
  edit:  {{cluster_role: edit, scope: namespace, max_duration: 4h, approvals: 1,
          namespaces: ["team-*"], clusters: [a]}}
  curated-view: {{cluster_role: accessbot-view, scope: namespace, max_duration: 4h,
                  approvals: 1, namespaces: ["team-*"], clusters: [a]}}
  tuned: {{cluster_role: {TUNED}, scope: namespace, max_duration: 4h, approvals: 1,
           namespaces: ["team-*"], clusters: [a]}}
  huge: {{cluster_role: {HUGE}, scope: namespace, max_duration: 4h, approvals: 1,
          namespaces: ["team-*"], clusters: [a]}}
  reader: {{cluster_role: view, scope: cluster, max_duration: 1h, approvals: 1,
            clusters: [a]}}
defaults: {{duration: 1h, pending_ttl: 24h, reminder_before: 10m}}
"""

TOKEN_FLAG = ":rotating_light: *token-minting*"
POD_FLAG = ":warning: *pod-create*"
NO_FLAGS = ":white_check_mark: No risk flags"
ANY_FLAG = ("*token-minting*", "*impersonation*", "*escalation*", "*rbac-write*",
            "*pod-create*", "*exec*", "*secrets-read*", "*node-proxy*", "*wildcard*")  # fmt: skip


@pytest.fixture
def roles(cluster: TestCluster) -> Iterator[None]:
    api = cluster.api_client()
    apply_cluster_role(
        api, TUNED, [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    )
    apply_cluster_role(
        api, HUGE, [{"apiGroups": ["allows-test.example.com"], "resources": HUGE_RESOURCES,
                     "verbs": ["get", "list", "watch"]}],
    )  # fmt: skip
    with curated_roles(cluster):
        yield
    for name in (TUNED, HUGE):
        with contextlib.suppress(ApiException):
            client.RbacAuthorizationV1Api(api).delete_cluster_role(name)


@pytest.fixture
async def bed(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path, roles: None
) -> AsyncIterator[SlackBed]:
    async with slack_bed(
        redis_url, {"a": cluster, "b": cluster_b}, tmp_path, policy_text=POLICY
    ) as b:
        yield b


def _card_calls(bed: SlackBed, grant_id: str) -> list[RecordedCall]:
    return [
        c
        for c in bed.emu.calls
        if c.ok
        and c.method in ("chat.postMessage", "chat.update")
        and c.params.get("channel") == APPROVALS
        and grant_id in json.dumps(c.params)
    ]


async def _settled_card(bed: SlackBed, text: str, user: str) -> tuple[str, RecordedCall]:
    """Request, then wait until the card shows the permissions (not 'being checked')."""
    reply = await bed.command(text, user)
    assert reply.status == 200
    grant = await bed.only_grant(user)
    deadline = asyncio.get_running_loop().time() + 90
    while True:
        calls = _card_calls(bed, grant.id)
        last = json.dumps(calls[-1].params) if calls else ""
        if "What this allows" in last and "Permissions being checked" not in last:
            break
        assert asyncio.get_running_loop().time() < deadline, f"card never settled: {last}"
        await asyncio.sleep(0.05)
    stored = bed.card_for(grant.id)
    assert stored["blocks"] == calls[-1].params["blocks"]  # what the channel shows now
    return grant.id, calls[-1]


def _flags_text(call: RecordedCall) -> str:
    return json.dumps(call.params["blocks"], ensure_ascii=False)


async def test_edit_card_flags_token_minting_and_pod_creation(bed: SlackBed) -> None:
    grant_id, call = await _settled_card(bed, "request edit -n team-a -d 1h roll out v2", "U0ALICE")
    shown = _flags_text(call)
    assert TOKEN_FLAG in shown
    assert POD_FLAG in shown
    # Dangerous ones visibly first, every flag of the analysis present.
    order = [shown.index(f"*{f}*") for f in ("token-minting", "impersonation", "pod-create",
                                              "exec", "secrets-read")]  # fmt: skip
    assert order == sorted(order)
    assert "read and write" in shown
    assert "Deployments" in shown
    assert "cluster-scope" not in shown  # a RoleBinding
    assert len(call.params["blocks"]) <= 50
    dump = os.environ.get("ACCESSBOT_EDIT_CARD_DUMP")
    if dump:
        Path(dump).write_text(
            json.dumps(
                {k: call.params[k] for k in ("channel", "text", "blocks")},
                indent=2,
                ensure_ascii=False,
            )
        )
    assert grant_id


async def test_curated_role_card_shows_no_flags(bed: SlackBed) -> None:
    _, call = await _settled_card(bed, "request curated-view -n team-a look around", "U0ALICE")
    shown = _flags_text(call)
    assert NO_FLAGS in shown
    assert not any(flag in shown for flag in ANY_FLAG)
    assert "no Secrets" in shown


async def test_cluster_scope_is_a_flag(bed: SlackBed) -> None:
    _, call = await _settled_card(bed, "request reader -d 30m audit", "U0ALICE")
    shown = _flags_text(call)
    assert "*cluster-scope*" in shown
    assert NO_FLAGS not in shown


async def test_changing_the_cluster_role_changes_the_next_card(
    bed: SlackBed, cluster: TestCluster
) -> None:
    _, first = await _settled_card(bed, "request tuned -n team-a read a secret", "U0ALICE")
    assert "*secrets-read*" in _flags_text(first)
    apply_cluster_role(
        cluster.api_client(),
        TUNED,
        [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "get"]}],
    )
    _, second = await _settled_card(bed, "request tuned -n team-a roll out", "U0BOB")
    shown = _flags_text(second)
    assert "*secrets-read*" not in shown
    assert POD_FLAG in shown
    assert "no Secrets" in shown


async def test_a_summary_too_long_for_slack_puts_the_full_list_in_the_thread(
    bed: SlackBed,
) -> None:
    grant_id, call = await _settled_card(bed, "request huge -n team-a count widgets", "U0ALICE")
    shown = _flags_text(call)
    assert "cut short" in shown
    assert "permissions-allows-test-huge-a.txt" in shown
    ts = bed.card_for(grant_id)["ts"]
    deadline = asyncio.get_running_loop().time() + 60
    while not [f for f in bed.emu.uploaded_files if f.completed and f.thread_ts == ts]:
        assert asyncio.get_running_loop().time() < deadline, "no file in the card's thread"
        await asyncio.sleep(0.05)
    (file,) = [f for f in bed.emu.uploaded_files if f.completed and f.thread_ts == ts]
    assert file.filename == "permissions-allows-test-huge-a.txt"
    content = (file.content or b"").decode()
    assert all(name in content for name in HUGE_RESOURCES)


async def test_access_roles_lists_what_each_role_allows(bed: SlackBed) -> None:
    reply = await bed.command("roles -c a", "U0BOB")
    assert reply.status == 200
    answer = await bed.wait_response("Roles on a", timeout=60)
    shown = json.dumps(answer.params, ensure_ascii=False)
    for role in ("edit", "curated-view", "tuned", "huge", "reader"):
        assert f"*{role}*" in shown, shown[:4000]
    assert TOKEN_FLAG in shown
    assert NO_FLAGS in shown
    assert "permissions-allows-test-huge-a.txt (in your DM with AccessBot)" in shown
    deadline = asyncio.get_running_loop().time() + 60
    while not any(
        f.completed and f.filename == "permissions-allows-test-huge-a.txt" and not f.thread_ts
        for f in bed.emu.uploaded_files
    ):
        assert asyncio.get_running_loop().time() < deadline, "no full list in the DM"
        await asyncio.sleep(0.05)
    bad = await bed.command("roles -c nowhere", "U0BOB")
    assert "unknown cluster" in bad.text


async def test_request_form_shows_the_chosen_role(bed: SlackBed) -> None:
    await bed.command("", "U0ALICE")
    (opened,) = await bed.emu.wait_for("views.open")
    view_id = str(opened.params.get("view_id") or next(iter(bed.emu.views)))
    view = bed.emu.views[view_id]
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": "T0ACME"},
        "api_app_id": "A0ACCESSBOT",
        "token": "legacy-verification-token",
        "container": {"type": "view", "view_id": view_id},
        "trigger_id": "1.2.4",
        "team": {"id": "T0ACME", "domain": "acme"},
        "view": {**view, "state": {"values": {
            "cluster": {"access_modal_cluster": static_select("a")},
            "role-a": {"access_modal_role": static_select("edit")},
        }}},
        "actions": [{
            "type": "static_select", "action_id": "access_modal_role", "block_id": "role-a",
            "selected_option": static_select("edit")["selected_option"], "action_ts": "1.0",
        }],
    }  # fmt: skip
    await bed.post(_payload_form(payload))
    updates = await bed.emu.wait_for(
        "views.update",
        timeout=60,
        predicate=lambda c: "Permissions being checked" not in json.dumps(c.params),
    )
    shown = json.dumps(updates[-1].params["view"], ensure_ascii=False)
    assert TOKEN_FLAG in shown
    assert POD_FLAG in shown


# -- a slow cluster: the card does not wait ------------------------------------------------

DELAY = 4.0


@pytest.fixture
async def slow_bed(
    redis_url: str, cluster: TestCluster, cluster_b: TestCluster, tmp_path: Path, roles: None
) -> AsyncIterator[tuple[SlackBed, SlowProxy]]:
    parts = urlsplit(cluster.server)
    async with SlowProxy(parts.hostname or "127.0.0.1", parts.port or 443, delay=DELAY) as proxy:
        kubeconfig = combined_kubeconfig(
            tmp_path / "slow.kubeconfig", {"a": cluster, "b": cluster_b}
        )
        doc = yaml.safe_load(kubeconfig.read_text())
        for entry in doc["clusters"]:
            if entry["name"] == cluster.name:
                entry["cluster"]["server"] = proxy.url
        kubeconfig.write_text(yaml.safe_dump(doc))
        async with slack_bed(
            redis_url, {"a": cluster, "b": cluster_b}, tmp_path, policy_text=POLICY,
            kubeconfig=kubeconfig, wipe=False,
        ) as bed:  # fmt: skip
            yield bed, proxy
            proxy.delay = 0


async def test_slow_cluster_card_says_checking_then_is_updated_in_place(
    slow_bed: tuple[SlackBed, SlowProxy],
) -> None:
    bed, _ = slow_bed
    reply = await bed.command("request edit -n team-a -d 1h slow day", "U0ALICE")
    assert reply.status == 200
    grant = await bed.only_grant("U0ALICE")
    (posted,) = await bed.emu.wait_for(
        "chat.postMessage",
        timeout=30,
        predicate=lambda c: c.ok and c.params["channel"] == APPROVALS,
    )
    assert "Permissions being checked" in json.dumps(posted.params)
    assert grant.id in json.dumps(posted.params)
    updated = await bed.emu.wait_for(
        "chat.update",
        timeout=90,
        predicate=lambda c: c.ok and TOKEN_FLAG in json.dumps(c.params, ensure_ascii=False),
    )
    assert updated[-1].params["ts"] == posted.response["ts"]
    assert TOKEN_FLAG in json.dumps(bed.card_for(grant.id), ensure_ascii=False)
