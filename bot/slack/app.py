"""The Bolt app: thin listeners that ack, parse, call the workflow and render.

Every command and click is acknowledged before anything slow happens. With
Bolt's default ``process_before_response=False`` the HTTP response (or Socket
Mode ack) goes out at ``ack()`` and the listener keeps running, so Slack's 3 s
deadline holds even when an apiserver takes seconds per call. What runs before
``ack()`` is pure (parsing, policy checks) or a local Redis read.

Replies to a command or click go to its ``response_url`` as ephemeral messages
(they work in any channel, whether or not the app is a member); where there is
none (App Home, modals) the user gets a DM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs

from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import Core
from bot.errors import NotAllowed, UnknownGrant
from bot.http.signing import verify_slack
from bot.lifecycle import State
from bot.models import Grant, utcnow
from bot.policy import AccessRequestSpec, RequestRejected, resolve_request, role_clusters
from bot.slack import ids
from bot.slack.blocks import (
    PERMISSIONS_CHECKING,
    HomeData,
    Message,
    Permissions,
    allowance_file,
    allowance_file_name,
    allowance_fits,
    error_message,
    grant_list_message,
    help_message,
    home_view,
    info_message,
    roles_messages,
)
from bot.slack.client import error_code
from bot.slack.commands import (
    USAGE,
    CommandError,
    Extend,
    Helm,
    Help,
    ListGrants,
    Nodes,
    OpenModal,
    Request,
    Revoke,
    Roles,
    Standing,
    parse_access,
    parse_k8s,
)
from bot.slack.directory import SlackDirectory
from bot.slack.forms import (
    deny_modal,
    extend_modal,
    grant_from_metadata,
    read_request_form,
    read_text,
    request_modal,
    requestable_clusters,
    roles_on,
    validate_extension,
    validate_request_form,
)
from bot.slack.gate import OffboardGate
from bot.slack.notifier import CARD_PATIENCE_SECONDS, SlackNotifier
from bot.slack.reports import ReportAccess, may_run_reports, run_report, run_standing
from bot.slack.text import code, escape, unescape
from bot.workflow import Outcome, Workflow
from k8s.errors import ClusterError
from k8s.rbac import Allowance

__all__ = ["ReportAccess", "build_slack_app", "slack_http_handler"]

log = logging.getLogger(__name__)

JSON = dict[str, Any]
T = TypeVar("T")
# Slack retries an event for a few minutes at most, and accepts a signed request for
# five: an hour covers both replays and retries.
DEDUPE_TTL = 3600
# Slack wants an answer to every delivery within 3 s. These budgets keep what runs
# before the answer inside it whatever Redis does: the de-duplication check gets
# DEDUPE_PATIENCE, a read before an ack PRE_ACK_PATIENCE, and the HTTP layer answers
# at ANSWER_DEADLINE in any case (seconds).
DEDUPE_PATIENCE = 1.5
PRE_ACK_PATIENCE = 0.8
ANSWER_DEADLINE = 2.5
# Work that must happen (a deactivation's offboarding) waits for Redis this long
# between attempts, at most (seconds).
REDIS_RETRY_CAP = 10.0
# response_url accepts 5 posts in 30 minutes; keep one for a final note.
RESPONSES_PER_COMMAND = 4
OFFBOARD_ACTOR = "slack"


def build_slack_app(
    *,
    core: Core,
    client: AsyncWebClient,
    signing_secret: str | None,
    socket_mode: bool = False,
    report_access: ReportAccess = "everyone",
) -> AsyncApp:
    """The Bolt app for HTTP (``signing_secret`` required) or Socket Mode."""
    if not socket_mode and not signing_secret:
        raise ValueError("HTTP mode needs the Slack signing secret to verify requests")
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "",
        # Socket Mode frames are authenticated by the app token's connection.
        request_verification_enabled=not socket_mode,
        process_before_response=False,
        name="accessbot",
    )
    _Listeners(core, client, report_access).register(app)
    app.error(_unexpected_error)
    return app


async def _unexpected_error(
    error: Exception, body: JSON, response: BoltResponse | None
) -> BoltResponse | None:
    """A bug before the ack answers 200 with an apology, never a 5xx and a retry.

    ``response`` is None when the ack has gone out already; then there is
    nothing left to answer and the error is only logged.
    """
    log.error("unexpected error handling a Slack request: %r", error, exc_info=error)
    if response is None:
        return None
    if body.get("command"):
        apology = error_message("Something went wrong on our side; it has been logged.")
        return BoltResponse(status=200, body=json.dumps(_ephemeral(apology)))
    return BoltResponse(status=200, body="")


def slack_http_handler(
    app: AsyncApp,
    signing_secret: str,
    *,
    clock: Callable[[], float] = time.time,
    answer_within: float = ANSWER_DEADLINE,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``POST /slack/events`` for aiohttp: verify, parse, dispatch, answer in time.

    The signature is checked on the raw bytes before anything parses them (401 for
    any malformed or wrong header; see ``bot.http.signing``); a signed body that is
    not a Slack payload is a 400. Bolt acks commands and clicks as soon as the
    listener calls ``ack()``; should anything before that take longer than
    ``answer_within`` seconds (a hung Redis), Slack gets an empty 200 then and
    the dispatch carries on in the background, so Slack never sees a timeout and
    never retries or disables the event subscription because of us.
    """
    background: set[asyncio.Task[BoltResponse]] = set()

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = request.headers
        if _is_ssl_check(raw):
            return web.Response(status=200)  # carries no action; Bolt skips verifying it too
        if not verify_slack(
            signing_secret,
            headers.get("X-Slack-Request-Timestamp"),
            headers.get("X-Slack-Signature"),
            raw,
            clock(),
        ):
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            bolt_request = AsyncBoltRequest(
                body=raw.decode("utf-8"),
                query=request.query_string,
                headers={k: headers.getall(k) for k in headers},
            )
        except Exception as exc:  # any parse failure of a signed body: its problem
            log.warning("unparseable Slack request: %s", exc.__class__.__name__)
            return web.json_response({"error": "malformed request body"}, status=400)
        dispatch = asyncio.ensure_future(app.async_dispatch(bolt_request))
        # Held until done: it may outlive this request (and asyncio keeps only weak
        # references to tasks).
        background.add(dispatch)
        dispatch.add_done_callback(_settled(background))
        try:
            response = await asyncio.wait_for(asyncio.shield(dispatch), answer_within)
        except TimeoutError:
            log.warning("Slack request not answered in %.1fs; acknowledging it now", answer_within)
            return web.Response(status=200)
        except Exception:  # Bolt answers its own errors; this would be a bug of ours
            return web.Response(status=200)
        return await to_aiohttp_response(response)

    return handle


def _settled(
    background: set[asyncio.Task[BoltResponse]],
) -> Callable[[asyncio.Task[BoltResponse]], None]:
    def done(task: asyncio.Task[BoltResponse]) -> None:
        background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("Slack request failed: %r", exc, exc_info=exc)

    return done


def _ephemeral(message: Message) -> JSON:
    return {**message.as_kwargs(), "response_type": "ephemeral"}


class _Listeners:
    def __init__(self, core: Core, client: AsyncWebClient, report_access: ReportAccess) -> None:
        self.core = core
        self.client = client
        self.report_access = report_access
        self.workflow: Workflow = core.workflow
        self.policy = core.policy
        notifier = core.workflow.notifier
        self.notifier = (
            notifier if isinstance(notifier, SlackNotifier) else SlackNotifier(client, core.policy)
        )
        self.notifier.use_clusters(core.clusters)
        directory = core.workflow.directory
        self.directory = directory if isinstance(directory, SlackDirectory) else None

    def register(self, app: AsyncApp) -> None:
        app.middleware(self.dedupe_events)
        app.middleware(OffboardGate(self.workflow, self.notifier).check)
        app.command("/access")(self.access_command)
        app.command("/k8s")(self.k8s_command)
        app.action(ids.APPROVE)(self.approve_click)
        app.action(ids.DENY)(self.deny_click)
        app.action(ids.REVOKE)(self.revoke_click)
        app.action(ids.EXTEND)(self.extend_click)
        app.action(ids.OPEN_MODAL)(self.open_modal_click)
        app.action(ids.MODAL_CLUSTER)(self.modal_cluster_changed)
        app.action(ids.MODAL_ROLE)(self.modal_role_changed)
        app.view(ids.REQUEST_MODAL)(self.request_submitted)
        app.view(ids.DENY_MODAL)(self.deny_submitted)
        app.view(ids.EXTEND_MODAL)(self.extend_submitted)
        app.event("app_home_opened")(self.home_opened)
        app.event("user_change")(self.user_changed)
        app.event("subteam_created")(self.usergroup_changed)
        app.event("subteam_updated")(self.usergroup_changed)
        app.event("subteam_members_changed")(self.usergroup_members_changed)

    # -- Events API retries ---------------------------------------------------------------

    async def dedupe_events(
        self, body: JSON, next_: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        """Handle each delivery once: events by ``event_id``, the rest by ``trigger_id``.

        Bolt does not de-duplicate. Slack retries events; a signed slash command or
        submission captured in transit can be replayed within the 5-minute window.
        When Redis does not answer within DEDUPE_PATIENCE the delivery is handled
        anyway: every handler is idempotent, and better twice than never.
        """
        key = _delivery_key(body)
        if key:
            try:
                first = await asyncio.wait_for(
                    self.core.store.first_time(key, DEDUPE_TTL), DEDUPE_PATIENCE
                )
            except (RedisError, TimeoutError) as exc:
                log.warning("de-duplication unavailable (%s); handling %s", _why(exc), key)
                first = True
            if not first:
                log.info("ignoring repeated Slack delivery %s", key)
                return BoltResponse(status=200, body="")
        await next_()
        return None

    # -- answering after the ack -------------------------------------------------------

    async def _answer(
        self,
        user: str,
        respond: AsyncRespond | None,
        what: str,
        grant_id: str,
        work: Awaitable[Message | None],
    ) -> None:
        """Run the slow part of a command, click or submission and answer the user.

        Mistakes become ephemeral explanations; a refusal is also audited. Nothing
        escapes: by now Slack has had its ack, so an exception would only be logged
        by Bolt while the user waited for an answer that never came.
        """
        try:
            message = await work
        except NotAllowed as exc:  # the workflow has audited the refusal
            message = error_message(f"{_words(exc)}. Nothing was changed.")
        except (RequestRejected, UnknownGrant) as exc:
            message = error_message(_words(exc))
        except SlackClientError as exc:
            # Only when Slack failed and nothing was cached to fall back on.
            log.warning("%s by %s needed Slack, which failed: %s", what, user, error_code(exc))
            message = error_message(
                f"Slack did not answer a lookup AccessBot needed ({error_code(exc)}); "
                "please try again in a minute."
            )
        except Exception:
            log.exception("%s by %s failed (grant %s)", what, user, grant_id or "-")
            message = error_message("Something went wrong on our side; it has been logged.")
        if message is not None:
            await self._send(user, respond, message)

    async def _send(self, user: str, respond: AsyncRespond | None, message: Message) -> None:
        """Privately: via the response_url when there is one, else in a DM."""
        if respond is None:
            await self.notifier.send_dm(user, message)
            return
        try:
            await respond(**_ephemeral(message), replace_original=False)
        except (SlackClientError, ValueError, OSError) as exc:
            log.warning("could not answer via response_url: %s", error_code(exc))

    # -- /access --------------------------------------------------------------------------

    async def access_command(self, ack: AsyncAck, command: JSON, respond: AsyncRespond) -> None:
        user = str(command["user_id"])
        try:
            parsed = parse_access(_typed(command))
            if isinstance(parsed, Request):
                resolve_request(self.policy, self._spec(parsed, user))  # pure: answer at once
        except CommandError as exc:
            await ack(**_ephemeral(error_message(exc.problem, exc.usage)))
            return
        except RequestRejected as exc:
            await ack(**_ephemeral(error_message(str(exc), USAGE["request"])))
            return
        if isinstance(parsed, Help):
            await ack(**_ephemeral(help_message("access")))
            return
        if isinstance(parsed, Roles):
            clusters = requestable_clusters(self.policy)
            if parsed.cluster is not None and parsed.cluster not in clusters:
                problem = f"unknown cluster {parsed.cluster!r}; clusters: {', '.join(clusters)}"
                await ack(**_ephemeral(error_message(problem, USAGE["roles"])))
                return
            await ack()
            names = [parsed.cluster] if parsed.cluster else clusters
            await self._answer(user, respond, "roles", "", self._roles(names, user, respond))
            return
        await ack()
        if isinstance(parsed, OpenModal):
            await self._open(str(command["trigger_id"]), request_modal(self.policy), user)
            return
        target = getattr(parsed, "grant_id", "")
        await self._answer(
            user, respond, type(parsed).__name__.lower(), target, self._access(parsed, user)
        )

    def _spec(self, cmd: Request, user: str) -> AccessRequestSpec:
        return AccessRequestSpec(
            requester=user,
            role=cmd.role,
            cluster=cmd.cluster,
            namespace=cmd.namespace,
            duration=cmd.duration,
            reason=cmd.reason,
        )

    async def _access(self, cmd: Request | ListGrants | Revoke | Extend, user: str) -> Message:
        if isinstance(cmd, Request):
            grant = await self.workflow.submit(self._spec(cmd, user))
            return _submitted(grant, self.policy.approvals_channel)
        if isinstance(cmd, ListGrants):
            grants = await self.workflow.list_grants(user, everyone=cmd.everyone)
            return grant_list_message(grants, utcnow(), everyone=cmd.everyone)
        if isinstance(cmd, Revoke):
            return await self._revoke(cmd.grant_id, user)
        result = await self.workflow.extend(cmd.grant_id, user, cmd.duration)
        return _extended(cmd.grant_id, result)

    async def _roles(self, clusters: list[str], user: str, respond: AsyncRespond) -> None:
        """``/access roles``: every role's permissions per cluster, read concurrently."""
        checks = {
            (cluster, role): self.notifier.permissions_check(
                cluster,
                self.policy.roles[role].cluster_role,
                namespaced=self.policy.roles[role].scope == "namespace",
            )
            for cluster in clusters
            for role in roles_on(self.policy, cluster)
        }
        await asyncio.gather(*checks.values())
        sent = 0
        for cluster in clusters:
            entries = [
                (role, checks[cluster, role].result()) for role in roles_on(self.policy, cluster)
            ]
            for message in roles_messages(self.policy, cluster, entries):
                # A response_url takes 5 posts; past that the rest goes to the DM.
                await self._send(user, respond if sent < RESPONSES_PER_COMMAND else None, message)
                sent += 1
            for _, permissions in entries:
                if (
                    isinstance(permissions, Allowance)
                    and permissions.exists
                    and not allowance_fits(permissions)
                ):
                    await self._upload(
                        user, allowance_file_name(permissions), allowance_file(permissions)
                    )

    # -- /k8s -----------------------------------------------------------------------------

    async def k8s_command(self, ack: AsyncAck, command: JSON, respond: AsyncRespond) -> None:
        user = str(command["user_id"])
        try:
            parsed = parse_k8s(_typed(command))
        except CommandError as exc:
            await ack(**_ephemeral(error_message(exc.problem, exc.usage)))
            return
        if isinstance(parsed, Help):
            await ack(**_ephemeral(help_message("k8s")))
            return
        known = self.core.clusters.names
        names = [parsed.cluster] if parsed.cluster else known
        unknown = [n for n in names if n not in known]
        if unknown:
            problem = f"unknown cluster {unknown[0]!r}; clusters: {', '.join(known)}"
            await ack(**_ephemeral(error_message(problem)))
            return
        await ack()
        await self._answer(
            user, respond, "run a cluster report", "", self._reports(parsed, names, user, respond)
        )

    async def _reports(
        self, cmd: Nodes | Helm | Standing, names: list[str], user: str, respond: AsyncRespond
    ) -> Message | None:
        """Post each cluster's report; returns a closing note, if one is needed."""
        if isinstance(cmd, Standing):
            await self.workflow.require_admin(user, "see standing privilege")
        else:
            groups = frozenset() if self.report_access == "everyone" else await self._groups(user)
            if not may_run_reports(self.policy, self.report_access, user, groups):
                raise NotAllowed("cluster reports are limited to admins and approvers")
        sent = 0
        for name in names:
            for message in await self._report(cmd, name, user):
                # A response_url takes 5 posts; past that the rest goes to the DM.
                await self._send(user, respond if sent < RESPONSES_PER_COMMAND else None, message)
                sent += 1
        if sent > RESPONSES_PER_COMMAND:
            return info_message("The rest of the report is in your DM with AccessBot.")
        return None

    async def _groups(self, user: str) -> frozenset[str]:
        return await self.workflow.directory.groups_of(user)

    async def _report(self, cmd: Nodes | Helm | Standing, cluster: str, user: str) -> list[Message]:
        try:
            client = self.core.clusters[cluster]
            if isinstance(cmd, Standing):
                output = await run_standing(cmd, client)
            else:
                output = await run_report(cmd, client)
        except ClusterError as exc:
            return [error_message(str(exc))]
        if output.file_name and output.file_content is not None:
            await self._upload(user, output.file_name, output.file_content)
        return list(output.messages)

    async def _upload(self, user: str, filename: str, content: str) -> None:
        try:
            opened = await self.client.conversations_open(users=user)
            channel = str((opened.get("channel") or {}).get("id") or "")
            await self.client.files_upload_v2(
                channel=channel, content=content.encode(), filename=filename
            )
        except SlackClientError as exc:
            log.error("could not upload report %s for %s: %s", filename, user, error_code(exc))

    # -- buttons ---------------------------------------------------------------------------

    async def _click(
        self,
        ack: AsyncAck,
        body: JSON,
        action: JSON,
        respond: AsyncRespond,
        what: str,
        work: Callable[[str, str, JSON], Awaitable[Message | None]],
    ) -> None:
        """Every button: ack at once, then the slow part, then the answer."""
        await ack()
        user, grant_id = _clicker(body), _value(action)
        await self._answer(
            user, _responder(body, respond), what, grant_id, work(grant_id, user, body)
        )

    async def approve_click(
        self, ack: AsyncAck, body: JSON, action: JSON, respond: AsyncRespond
    ) -> None:
        await self._click(ack, body, action, respond, "approve", self._approve)

    async def _approve(self, grant_id: str, user: str, body: JSON) -> Message | None:
        decision = await self.workflow.approve(grant_id, user)
        await self._refresh_home(body)
        return _decision_note(decision.outcome, decision.grant)

    async def deny_click(
        self, ack: AsyncAck, body: JSON, action: JSON, respond: AsyncRespond
    ) -> None:
        await self._click(ack, body, action, respond, "deny", self._ask_deny_reason)

    async def _ask_deny_reason(self, grant_id: str, user: str, body: JSON) -> Message | None:
        grant = await self.workflow.get(grant_id)
        if grant.state != State.PENDING:
            return info_message(f"This request is already {grant.state}.")
        await self.workflow.require_decider(grant, user, "deny")
        await self._open(_trigger(body), deny_modal(grant), user)
        return None

    async def revoke_click(
        self, ack: AsyncAck, body: JSON, action: JSON, respond: AsyncRespond
    ) -> None:
        await self._click(ack, body, action, respond, "revoke", self._revoke)

    async def _revoke(self, grant_id: str, user: str, body: JSON | None = None) -> Message:
        """Revoke (or cancel) and say what happened; the workflow checks permission."""
        revocation = await self.workflow.revoke(grant_id, user)
        if body is not None:
            await self._refresh_home(body)
        if revocation.already_over:
            return info_message(
                f"{grant_id} had already ended ({revocation.was}); nothing to revoke."
            )
        return _revoked(revocation.grant)

    async def extend_click(
        self, ack: AsyncAck, body: JSON, action: JSON, respond: AsyncRespond
    ) -> None:
        await self._click(ack, body, action, respond, "extend", self._ask_extension)

    async def _ask_extension(self, grant_id: str, user: str, body: JSON) -> Message | None:
        grant = await self.workflow.get(grant_id)
        await self.workflow.require_owner_or_admin(grant, user, "extend")
        if grant.state != State.ACTIVE or grant.expires_at is None:
            return info_message(f"This grant is {grant.state}; only active grants extend.")
        await self._open(_trigger(body), extend_modal(grant, self.policy, utcnow()), user)
        return None

    async def open_modal_click(self, ack: AsyncAck, body: JSON) -> None:
        await ack()
        await self._open(_trigger(body), request_modal(self.policy), _clicker(body))

    async def modal_cluster_changed(self, ack: AsyncAck, body: JSON, action: JSON) -> None:
        """The request form's cluster changed: offer that cluster's roles."""
        await ack()
        view = body.get("view") or {}
        cluster = str((action.get("selected_option") or {}).get("value") or "")
        metadata = str(view.get("private_metadata") or "")
        try:
            await self.client.views_update(
                view_id=str(view.get("id") or ""),
                hash=view.get("hash"),
                view=request_modal(self.policy, cluster=cluster, metadata=metadata),
            )
        except SlackClientError as exc:
            # hash_conflict: the user changed it again meanwhile; the newer update wins.
            log.info("request form update skipped: %s", error_code(exc))

    async def modal_role_changed(self, ack: AsyncAck, body: JSON, action: JSON) -> None:
        """The request form's role changed: show what it allows on the chosen cluster.

        The form is redrawn at once (saying "permissions being checked" unless the
        answer comes within the card's patience) and again when the answer comes.
        """
        await ack()
        view = body.get("view") or {}
        form = read_request_form(_values(view))
        role = str((action.get("selected_option") or {}).get("value") or "")
        cluster = form.cluster or ""
        if role not in self.policy.roles or cluster not in role_clusters(self.policy, role):
            return
        config = self.policy.roles[role]
        check = self.notifier.permissions_check(
            cluster, config.cluster_role, namespaced=config.scope == "namespace"
        )
        try:
            found = await asyncio.wait_for(asyncio.shield(check), CARD_PATIENCE_SECONDS)
        except TimeoutError:
            found = PERMISSIONS_CHECKING
        view_hash = await self._redraw_request_form(view, cluster, role, found, view.get("hash"))
        if found is PERMISSIONS_CHECKING and view_hash is not None:
            await self._redraw_request_form(view, cluster, role, await check, view_hash)

    async def _redraw_request_form(
        self, view: JSON, cluster: str, role: str, found: Permissions, view_hash: Any
    ) -> str | None:
        """``views.update`` the request form; the new hash, None when Slack refused."""
        metadata = str(view.get("private_metadata") or "")
        try:
            resp = await self.client.views_update(
                view_id=str(view.get("id") or ""),
                hash=view_hash,
                view=request_modal(
                    self.policy, cluster=cluster, role=role, metadata=metadata, permissions=found
                ),
            )
        except SlackClientError as exc:
            # hash_conflict: the user changed the form meanwhile; the newer update wins.
            log.info("request form update skipped: %s", error_code(exc))
            return None
        return str((resp.get("view") or {}).get("hash") or "") or None

    # -- modals: validated before the ack, so mistakes show next to the field -------------

    async def request_submitted(self, ack: AsyncAck, body: JSON, view: JSON) -> None:
        user = _clicker(body)
        spec, errors = validate_request_form(self.policy, read_request_form(_values(view)), user)
        if spec is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        await self._answer(user, None, "request", "", self._submit_quietly(spec))

    async def _submit_quietly(self, spec: AccessRequestSpec) -> None:
        await self.workflow.submit(spec)  # the requester hears from the notifier

    async def deny_submitted(self, ack: AsyncAck, body: JSON, view: JSON) -> None:
        user = _clicker(body)
        grant_id = grant_from_metadata(str(view.get("private_metadata") or ""))
        reason = read_text(_values(view), ids.REASON_BLOCK) or ""
        await ack()
        await self._answer(user, None, "deny", grant_id, self._deny(grant_id, user, reason))

    async def _deny(self, grant_id: str, user: str, reason: str) -> Message | None:
        decision = await self.workflow.deny(grant_id, user, reason)
        if decision.outcome == Outcome.ALREADY_DECIDED:
            state = decision.grant.state
            return info_message(f"Request {grant_id} was already {state}; nothing changed.")
        return None

    async def extend_submitted(self, ack: AsyncAck, body: JSON, view: JSON) -> None:
        user = _clicker(body)
        grant_id = grant_from_metadata(str(view.get("private_metadata") or ""))
        try:
            # A local Redis read, bounded so the ack still goes out in time.
            grant = await asyncio.wait_for(self.core.store.get(grant_id), PRE_ACK_PATIENCE)
        except (RedisError, TimeoutError) as exc:
            log.warning("extension form of %s not checked: %s", grant_id, _why(exc))
            busy = {ids.DURATION_BLOCK: "AccessBot cannot reach its database; try again shortly."}
            await ack(response_action="errors", errors=busy)
            return
        if grant is None:
            gone = {ids.DURATION_BLOCK: "This grant no longer exists."}
            await ack(response_action="errors", errors=gone)
            return
        text = read_text(_values(view), ids.DURATION_BLOCK)
        by, problem = validate_extension(grant, self.policy, text, utcnow())
        if by is None:
            await ack(
                response_action="errors", errors={ids.DURATION_BLOCK: problem or "Not possible."}
            )
            return
        await ack()
        await self._answer(user, None, "extend", grant_id, self._extend(grant_id, user, by))

    async def _extend(self, grant_id: str, user: str, by: timedelta) -> Message | None:
        result = await self.workflow.extend(grant_id, user, by)
        # Extended at once: the DM with the fresh kubeconfig says so already.
        return _extended(grant_id, result) if result.id != grant_id else None

    # -- events ----------------------------------------------------------------------------------

    async def home_opened(self, event: JSON) -> None:
        if event.get("tab", "home") != "home":
            return
        await self._publish_home(str(event.get("user") or ""))

    async def user_changed(self, event: JSON) -> None:
        """Keep the directory's view of this one user current; offboard a deactivation.

        Slack sends ``user_change`` for every status, huddle or profile change, so
        only this user's cached entries change (from the event's own user object).
        """
        user = event.get("user")
        if not isinstance(user, dict):
            return
        user_id = str(user.get("id") or "")
        if not user_id:
            return
        if self.directory is not None:
            self.directory.user_changed(user)
        if user.get("deleted") is not True:
            return
        result = await _until_redis_answers(
            f"offboarding {user_id}",
            lambda: self.workflow.offboard(user_id, OFFBOARD_ACTOR, "Slack account deactivated"),
        )
        log.info(
            "offboarded %s: revoked %s, cancelled %s", user_id, result.revoked, result.cancelled
        )

    async def usergroup_changed(self, event: JSON) -> None:
        """``subteam_created`` / ``subteam_updated``: the event carries the whole usergroup."""
        subteam = event.get("subteam")
        if self.directory is not None and isinstance(subteam, dict):
            await self.directory.usergroup_changed(subteam)

    async def usergroup_members_changed(self, event: JSON) -> None:
        """``subteam_members_changed``: who joined and who left one usergroup."""
        if self.directory is None:
            return
        await self.directory.usergroup_members_changed(
            str(event.get("subteam_id") or ""),
            added=_strings(event.get("added_users")),
            removed=_strings(event.get("removed_users")),
        )

    # -- helpers ---------------------------------------------------------------------------

    async def _open(self, trigger_id: str, view: JSON, user: str) -> None:
        try:
            await self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackClientError as exc:
            # Usually an expired trigger (over 3 s): say so rather than fail silently.
            log.warning("views.open for %s failed: %s", user, error_code(exc))
            await self.notifier.send_dm(
                user, error_message("Slack would not open the form; please try again.")
            )

    async def _refresh_home(self, body: JSON) -> None:
        container = body.get("view") or {}
        if container.get("type") == "home":
            await self._publish_home(_clicker(body))

    async def _publish_home(self, user: str) -> None:
        if not user:
            return
        mine = await self.core.store.by_user(user)
        shown = [g for g in mine if not g.ended]
        data = HomeData(mine=shown, awaiting=await self.workflow.awaiting(user))
        try:
            await self.client.views_publish(user_id=user, view=home_view(data, utcnow()))
        except SlackClientError as exc:
            log.warning("views.publish for %s failed: %s", user, error_code(exc))


async def _until_redis_answers(what: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` until Redis lets it finish; retries only Redis being unreachable.

    For work Slack will not deliver again once acknowledged (a deactivation): the
    attempt repeats, with a growing pause up to REDIS_RETRY_CAP seconds, for as
    long as this process runs. ``work`` must be idempotent.
    """
    pause = 0.5
    while True:
        try:
            return await work()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("%s waits for Redis (%s); retrying in %.1fs", what, _why(exc), pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, REDIS_RETRY_CAP)


# -- small pure helpers -------------------------------------------------------------------


def _delivery_key(body: JSON) -> str:
    """What makes a delivery unique: ``event_id`` for events, else ``trigger_id``.

    Slash commands, clicks and submissions each carry a fresh ``trigger_id``; Slack
    never sends the same one twice, so a second sighting is a replay.
    """
    if body.get("type") == "event_callback":
        event_id = body.get("event_id")
        return f"slack-event:{str(event_id)[:100]}" if event_id else ""
    trigger = body.get("trigger_id")
    return f"slack-trigger:{str(trigger)[:200]}" if trigger else ""


def _is_ssl_check(raw: bytes) -> bool:
    """Slack's periodic certificate probe of a slash command URL (``ssl_check=1``)."""
    if len(raw) > 1000 or b"ssl_check=1" not in raw:
        return False
    fields = parse_qs(raw.decode("utf-8", "replace"))
    return fields.get("ssl_check") == ["1"] and not ({"command", "payload"} & fields.keys())


def _why(exc: BaseException) -> str:
    return str(exc) or exc.__class__.__name__


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _trigger(body: JSON) -> str:
    return str(body.get("trigger_id") or "")


def _value(action: JSON) -> str:
    return str(action.get("value") or "")


def _values(view: JSON) -> dict[str, Any]:
    values = (view.get("state") or {}).get("values")
    return values if isinstance(values, dict) else {}


def _responder(body: JSON, respond: AsyncRespond) -> AsyncRespond | None:
    """Bolt's ``respond`` when the payload has a response_url (App Home clicks do not)."""
    return respond if body.get("response_url") else None


def _typed(command: JSON) -> str:
    """What the user typed: Slack escapes &, < and > in slash command text."""
    return unescape(str(command.get("text") or ""))


def _clicker(body: JSON) -> str:
    return str((body.get("user") or {}).get("id") or "")


def _words(exc: BaseException) -> str:
    """A user-facing sentence from an exception (LookupError reprs its message)."""
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    return text[:1].upper() + text[1:]


def _submitted(grant: Grant, channel: str) -> Message:
    where = f"<#{channel}>" if channel[:1] in "CG" else escape(channel)
    if grant.state == State.PENDING:
        text = (
            f"Request {code(grant.id)} is waiting for approval in {where}. I'll DM you as it moves."
        )
    else:
        text = (
            f"Request {code(grant.id)} was approved by policy; your kubeconfig will arrive in a DM."
        )
    return Message(text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}])


def _revoked(grant: Grant) -> Message:
    if grant.state == State.CANCELLED:
        return info_message(f"Request {grant.id} is cancelled.")
    if grant.state == State.REVOKED:
        return info_message(f"Grant {grant.id} is revoked; its credentials no longer work.")
    return info_message(f"{grant.id} ended meanwhile ({grant.state}).")


def _extended(grant_id: str, result: Grant) -> Message:
    if result.id != grant_id:
        return info_message(
            f"Extension request {result.id} for grant {grant_id} went to the approvers; "
            "you will get a fresh kubeconfig when it is approved."
        )
    return info_message(f"Grant {grant_id} is extended; a fresh kubeconfig is in your DM.")


def _decision_note(outcome: Outcome, grant: Grant) -> Message | None:
    if outcome == Outcome.RECORDED:
        return info_message(f"Approval recorded; {grant.tally.remaining} more needed.")
    if outcome == Outcome.ALREADY_COUNTED:
        return info_message("You had already approved this request.")
    if outcome == Outcome.ALREADY_DECIDED:
        return info_message(f"This request is already {grant.state}; nothing changed.")
    return None
