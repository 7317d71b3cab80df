"""A Slack test bed: the real Bolt app over real HTTP, the Slack emulator, real Redis
and real apiservers, with requests signed exactly as Slack signs them.

How long an answer takes is not asserted here: a test runs on machines of any
speed and load. Slack's 3 s acknowledgement deadline is measured by ``bench/ack.py``
(``python -m bench.run --only ack``); that the ack never waits for a slow apiserver
is a behaviour, shown by ``tests/slack/test_slow_apiserver.py`` with the apiserver
held until the test lets it answer.

Waits are on conditions with generous deadlines (tests/support/patience.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import slack_bolt
from aiohttp import web
from slack_bolt.async_app import AsyncApp

import bot.slack
from bot.core import Core, build_core
from bot.models import Grant
from bot.policy import parse_policy
from bot.slack import (
    ReportAccess,
    SlackDirectory,
    SlackNotifier,
    build_slack_app,
    make_slack_client,
)
from bot.slack.app import slack_http_handler
from bot.slack.audit_digest import AuditPace
from tests.support.cluster import TestCluster, free_port
from tests.support.harness import (
    FAST_BACKOFF,
    FAST_SCHEDULER,
    bounded_teardown,
    prepare_clusters,
    settled,
    wait_for_grant,
    wipe_managed,
)
from tests.support.patience import PATIENCE
from tests.support.slack_emulator import RESPONSE_URL, RecordedCall, SlackEmulator
from tests.support.slack_signing import (
    block_actions_body,
    event_callback_body,
    retry_headers,
    sign,
    slash_command_body,
    view_submission_body,
)

BOT_TOKEN = "xoxb-accessbot-test"
SECRET = "accessbot-test-signing-secret"
APPROVALS = "C0APPROVALS"
AUDIT = "C0AUDIT"

# Roles as in tests/support/harness.py, except that edit lives on cluster a only (so
# "/access request edit -n team-a ..." needs no -c) and reminders come early.
POLICY = """
approvals_channel: C0APPROVALS
audit_channel: C0AUDIT
admins: ["U0ADMIN"]
clusters:
  a: {context: a}
  b: {context: b}
roles:
  view:  {cluster_role: view, scope: namespace, max_duration: 8h, approvals: 0,
          namespaces: ["team-*"]}
  edit:  {cluster_role: edit, scope: namespace, max_duration: 4h, approvals: 1,
          approvers: ["U0LEAD", "@platform-leads"], namespaces: ["team-*"],
          accepts_risks: [token-minting, impersonation], clusters: [a]}
  cluster-admin: {cluster_role: cluster-admin, scope: cluster, max_duration: 1h,
                  approvals: 2, approvers: ["U0LEAD", "U0BOSS", "@sre"],
                  clusters: [b],
                  accepts_risks: [token-minting, impersonation, escalation, rbac-write]}
defaults: {duration: 1h, pending_ttl: 24h, reminder_before: 10s}
"""

USERS = {
    "U0ALICE": ("alice", "alice@example.com"),
    "U0BOB": ("bob.smith", "bob@example.com"),
    "U0LEAD": ("lead", "lead@example.com"),
    "U0BOSS": ("boss", "boss@example.com"),
    "U0ADMIN": ("admin", "admin@example.com"),
    "U0PL1": ("pl1", "pl1@example.com"),
    "U0PL2": ("pl2", "pl2@example.com"),
    "U0SRE1": ("sre1", "sre1@example.com"),
}


def populate(emu: SlackEmulator) -> None:
    for user_id, (name, email) in USERS.items():
        emu.add_user(user_id, name=name, email=email)
    emu.add_usergroup("S0PLATFORM", "platform-leads", ["U0PL1", "U0PL2"])
    emu.add_usergroup("S0SRE", "sre", ["U0SRE1"])
    emu.add_channel(APPROVALS, "access-approvals")
    emu.add_channel(AUDIT, "access-audit")


@dataclass(frozen=True)
class Reply:
    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text) if self.text else None


@dataclass
class SlackBed:
    emu: SlackEmulator
    core: Core
    app: AsyncApp
    url: str
    kubeconfig: Path
    http: aiohttp.ClientSession
    replies: list[Reply] = field(default_factory=list)
    mark: float = 0.0  # when the last request was sent: responses after it are its own
    # Tasks alive when this bed was made: an earlier test's leftovers, not this bed's work.
    before: frozenset[asyncio.Task[Any]] = field(
        default_factory=lambda: frozenset(asyncio.all_tasks())
    )

    # -- sending -------------------------------------------------------------------

    async def post(
        self,
        body: bytes,
        *,
        secret: str = SECRET,
        timestamp: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        all_headers = {**sign(secret, body, timestamp), **(headers or {})}
        self.mark = time.time()
        async with self.http.post(self.url, data=body, headers=all_headers) as resp:
            text = await resp.text()
        reply = Reply(resp.status, text)
        self.replies.append(reply)
        return reply

    async def command(self, text: str, user: str, command: str = "/access") -> Reply:
        body = slash_command_body(command, text, user, response_url=self.emu.new_response_url())
        return await self.post(body)

    async def click(
        self, action_id: str, value: str, user: str, message: Mapping[str, Any], channel: str
    ) -> Reply:
        body = block_actions_body(
            action_id,
            value,
            user,
            channel,
            str(message["ts"]),
            message=dict(message),
            response_url=self.emu.new_response_url(),
        )
        return await self.post(body)

    async def submit(
        self,
        callback_id: str,
        values: Mapping[str, Mapping[str, Any]],
        user: str,
        private_metadata: str = "",
    ) -> Reply:
        return await self.post(view_submission_body(callback_id, values, user, private_metadata))

    async def event(
        self, event: dict[str, Any], event_id: str | None = None, retry: int = 0
    ) -> Reply:
        body = event_callback_body(event, event_id)
        return await self.post(body, headers=retry_headers(retry) if retry else None)

    # -- waiting for the bot to be done ---------------------------------------------

    def in_flight(self) -> list[asyncio.Task[Any]]:
        """Slack deliveries this bed sent still being handled (see :func:`_slack_work`).

        Tasks that already existed when the bed was made belong to earlier tests
        sharing the session's event loop: they are not this bed's deliveries.
        """
        return [
            t
            for t in asyncio.all_tasks()
            if not t.done() and t not in self.before and _slack_work(t)
        ]

    async def settled(self, timeout: float = PATIENCE) -> None:
        """Return once the bot has finished with everything sent to it so far.

        Every delivery has been handled to its end (Bolt runs a listener on after its
        ack, so an answered request proves nothing about what the listener does next)
        and the scheduler has no work due, running or retrying
        (:func:`tests.support.harness.settled`), every change told and posted to the
        audit channel. The barrier before asserting that
        something did not happen.
        """
        notifier = self.core.workflow.notifier
        assert isinstance(notifier, SlackNotifier)
        # The audit channel's posts follow at its pace, after the outbox told them.
        idle = lambda: not self.in_flight() and notifier.audit_waiting == 0  # noqa: E731
        await settled(self.core, idle, timeout)

    # -- looking -------------------------------------------------------------------

    def dm(self, user: str) -> list[dict[str, Any]]:
        return self.emu.messages(self.emu.dm_channel(user))

    def cards(self) -> list[dict[str, Any]]:
        return self.emu.messages(APPROVALS)

    def card_for(self, grant_id: str) -> dict[str, Any]:
        """The approval card of ``grant_id`` (identified by its buttons' value, not by
        being the latest message in the channel), which must already be posted."""
        found = [m for m in self.cards() if _card_of(m) == grant_id]
        assert found, f"no card for {grant_id}: {self.cards()}"
        assert len(found) == 1, f"{len(found)} cards for {grant_id}: {found}"
        return found[0]

    async def wait_card(
        self,
        grant_id: str,
        ok: Callable[[dict[str, Any]], bool] = lambda _m: True,
        timeout: float = PATIENCE,
    ) -> dict[str, Any]:
        """The approval card of ``grant_id`` once it is posted and satisfies ``ok``.

        Cards are matched by the request id they carry, so a card of another request
        (an earlier one of the same test, or one still being posted) never stands in.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = [m for m in self.cards() if _card_of(m) == grant_id]
            if found and ok(found[-1]):
                assert len(found) == 1, f"{len(found)} cards for {grant_id}: {found}"
                return found[-1]
            assert asyncio.get_running_loop().time() < deadline, (
                f"card of {grant_id} never matched: {found or self.cards()}"
            )
            await asyncio.sleep(0.05)

    def responses(
        self, predicate: Callable[[RecordedCall], bool] | None = None
    ) -> list[RecordedCall]:
        return [c for c in self.emu.calls_to(RESPONSE_URL) if predicate is None or predicate(c)]

    async def wait_response(self, needle: str, timeout: float = PATIENCE) -> RecordedCall:
        """A response_url post containing ``needle``, made for the latest request."""
        since = self.mark
        calls = await self.emu.wait_for(
            RESPONSE_URL,
            timeout=timeout,
            predicate=lambda c: (
                c.at >= since and needle in json.dumps(c.params, ensure_ascii=False)
            ),
        )
        return calls[-1]

    async def wait_dm(self, user: str, needle: str, timeout: float = PATIENCE) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for message in self.dm(user):
                if needle in json.dumps(message):
                    return message
            assert asyncio.get_running_loop().time() < deadline, (
                f"no DM to {user} with {needle!r}: {self.dm(user)}"
            )
            await asyncio.sleep(0.05)

    async def wait_audit(self, *needles: str, timeout: float = PATIENCE) -> str:
        """The audit channel's text once it holds every one of ``needles``: its posts
        follow the change through the outbox, at the channel's pace."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            posted = " ".join(blocks_text(m) for m in self.emu.messages(AUDIT))
            if all(n in posted for n in needles):
                return posted
            assert asyncio.get_running_loop().time() < deadline, (
                f"the audit channel never said {needles!r}: {posted}"
            )
            await asyncio.sleep(0.05)

    async def wait_grant(self, grant_id: str, *states: str, timeout: float = PATIENCE) -> Grant:
        return await wait_for_grant(self.core, grant_id, lambda g: g.state in states, timeout)

    async def request(self, text: str, user: str) -> Grant:
        """Send ``/access <text>`` and return the record that this very command created.

        The command is acknowledged before the record exists, so the record is found as
        the one grant of ``user`` that was not there before the command: never an earlier
        request of the same user that happens to be the newest one so far.
        """
        before = {g.id for g in await self.core.store.by_user(user)}
        reply = await self.command(text, user)
        assert reply.status == 200, reply
        return await self._new_grant(user, before)

    async def only_grant(self, user: str) -> Grant:
        """The one grant of ``user``, once it exists; fails if the user has several."""
        return await self._new_grant(user, set())

    async def _new_grant(self, user: str, before: set[str]) -> Grant:
        deadline = asyncio.get_running_loop().time() + PATIENCE
        while True:
            new = [g for g in await self.core.store.by_user(user) if g.id not in before]
            assert len(new) <= 1, f"one request made {len(new)} records: {new}"
            if new:
                return new[0]
            assert asyncio.get_running_loop().time() < deadline, f"no new grant for {user}"
            await asyncio.sleep(0.05)

    def all_stored_text(self) -> Iterator[tuple[str, Any]]:
        """Every message, ephemeral, response, view and Home ever stored, as JSON."""
        emu = self.emu
        for call in emu.calls:
            if call.method in (
                "chat.postMessage",
                "chat.update",
                "chat.postEphemeral",
                RESPONSE_URL,
            ):
                yield call.method, call.params
            if call.method in ("views.open", "views.update", "views.publish"):
                yield call.method, call.params.get("view")


_SLACK_CODE = tuple(
    f"{Path(package.__file__).parent}{os.sep}"  # type: ignore[arg-type]
    for package in (slack_bolt, bot.slack)
)


def _slack_work(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` handles a Slack delivery: a Bolt dispatch or listener, or work the
    bot's Slack layer started on its own (the offboarding gate's refusal DM).

    Told by where the task's coroutine is defined: nothing in Bolt or bot/slack runs
    as a long-lived task (the scheduler, reconciler and HTTP servers live elsewhere),
    so any such task still running is a delivery not yet fully handled.
    """
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and code.co_filename.startswith(_SLACK_CODE)


_CARD_ID = re.compile(r"Request `([a-z2-7]+)`")


def _card_of(message: Mapping[str, Any]) -> str | None:
    """The request id an approval card is about (its "Request `id`" line), or None.

    Not "the id appears somewhere in the message": an extension's card names the grant it
    extends, and that must not make it the card of that grant.
    """
    found = _CARD_ID.search(json.dumps(message.get("blocks") or []))
    return found.group(1) if found else None


async def serve_bolt(app: AsyncApp) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on ``/slack/events`` with the handler ``accessbot serve`` uses."""
    web_app = web.Application()
    web_app.router.add_post("/slack/events", slack_http_handler(app, SECRET))
    runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/slack/events"


@asynccontextmanager
async def slack_bed(
    redis_url: str,
    clusters: dict[str, TestCluster],
    tmp: Path,
    *,
    policy_text: str = POLICY,
    kubeconfig: Path | None = None,
    wipe: bool = True,
    report_access: ReportAccess = "everyone",
    emu: SlackEmulator | None = None,
    audit_pace: AuditPace | None = None,
) -> AsyncIterator[SlackBed]:
    combined = prepare_clusters(clusters, tmp)
    policy = parse_policy(policy_text)
    own_emu = emu is None
    emulator = emu or await SlackEmulator().start()
    populate(emulator)
    # One long-lived session for the Web API and response_url posts, as serve has.
    slack_session = aiohttp.ClientSession()
    client = make_slack_client(BOT_TOKEN, emulator.base_url, session=slack_session)
    directory = SlackDirectory(client)
    notifier = SlackNotifier(client, policy, directory=directory, audit_pace=audit_pace)
    core = await build_core(
        policy,
        redis_url,
        notifier=notifier,
        directory=directory,
        kubeconfig=str(kubeconfig or combined),
        reconcile_interval=3600.0,
        backoff=FAST_BACKOFF,
        scheduler_options=FAST_SCHEDULER,
    )
    if wipe:
        await wipe_managed(core)
    app = build_slack_app(
        core=core, client=client, signing_secret=SECRET, report_access=report_access
    )
    runner, url = await serve_bolt(app)
    core.start()
    http = aiohttp.ClientSession()
    try:
        yield SlackBed(emulator, core, app, url, kubeconfig or combined, http)
    finally:
        await bounded_teardown("close the test's HTTP client", http.close())
        await bounded_teardown("stop the Bolt HTTP server", runner.cleanup())
        await bounded_teardown("close the core", core.close())
        await bounded_teardown("close the Slack session", slack_session.close())
        if own_emu:
            await bounded_teardown("stop the Slack emulator", emulator.stop())


def blocks_text(message: Mapping[str, Any]) -> str:
    """All text of a message's blocks, for asserting on what a reader sees."""
    return json.dumps(message.get("blocks") or [], ensure_ascii=False)


def values_for_request(
    *, cluster: str, role: str, namespace: str | None, duration: str | None, reason: str | None
) -> dict[str, dict[str, Any]]:
    """``view.state.values`` of a filled-in request modal."""
    from tests.support.slack_signing import static_select, text_input

    return {
        "cluster": {"access_modal_cluster": static_select(cluster)},
        f"role-{cluster}": {"value": static_select(role)},
        "namespace": {"value": text_input(namespace)},
        "duration": {"value": text_input(duration)},
        "reason": {"value": text_input(reason)},
    }
