"""The Bolt app: thin listeners that ack, parse, call a use case and render.

The listeners are grouped by what Slack sends: :mod:`bot.slack.slash` (slash
commands), :mod:`bot.slack.clicks` (buttons), :mod:`bot.slack.modals` (forms),
:mod:`bot.slack.events` (Events API). Before any of them run, two middlewares:
:mod:`bot.slack.dedupe` drops retries and replays, :mod:`bot.slack.gate` refuses
offboarded people. :mod:`bot.slack.ingress` serves them over HTTP.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import Core
from bot.slack import ids
from bot.slack.blocks.replies import our_fault
from bot.slack.clicks import Buttons
from bot.slack.dedupe import DeliveryDedupe
from bot.slack.events import Events
from bot.slack.gate import OffboardGate
from bot.slack.ingress import slack_http_handler
from bot.slack.modals import Modals
from bot.slack.narrowing import NarrowingListeners
from bot.slack.payloads import ephemeral
from bot.slack.slash import SlashCommands
from bot.slack.surface import Surface
from bot.slack.text import JSON
from bot.usecases.reports import ReportAccess

__all__ = ["ReportAccess", "build_slack_app", "slack_http_handler"]

log = logging.getLogger(__name__)

# A Bolt listener: Bolt passes the arguments it names (ack, body, action, view...).
Listener = Callable[..., Awaitable[None]]


def build_slack_app(
    *,
    core: Core,
    client: AsyncWebClient,
    signing_secret: str | None,
    socket_mode: bool = False,
    report_access: ReportAccess = "everyone",
) -> AsyncApp:
    """The Bolt app for HTTP or Socket Mode.

    Parameters:
        core: the composition root (workflow, policy, use cases, ports).
        client: the Slack Web API client the listeners answer with.
        signing_secret: verifies every HTTP request; required unless ``socket_mode``
            (raises ``ValueError`` without it).
        socket_mode: frames come over the app token's connection, which
            authenticates them. Default False (HTTP).
        report_access: who may run ``/k8s nodes`` and ``/k8s helm`` (the policy's
            ``reports`` key). Default ``"everyone"``.
    """
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
    surface = Surface(core, client, report_access)
    app.middleware(DeliveryDedupe(surface.deliveries).check)
    app.middleware(OffboardGate(surface.workflow, surface.notifier).check)
    _route(app, surface)
    app.error(_unexpected_error)
    return app


def _route(app: AsyncApp, surface: Surface) -> None:
    """Every command, click, form and event the app listens to (and the manifest lists)."""
    slash, buttons, modals, events = (
        SlashCommands(surface),
        Buttons(surface),
        Modals(surface),
        Events(surface),
    )
    app.command("/access")(slash.access_command)
    app.command("/k8s")(slash.k8s_command)
    narrowing = NarrowingListeners(surface)
    clicks: dict[str, Listener] = {
        ids.APPROVE: buttons.approve_click,
        ids.DENY: buttons.deny_click,
        ids.REVOKE: buttons.revoke_click,
        ids.EXTEND: buttons.extend_click,
        ids.RATIFY: buttons.ratify_click,
        ids.OPEN_MODAL: buttons.open_modal_click,
        ids.NARROW: narrowing.narrow_click,
        ids.EXTEND_EXISTING: narrowing.extend_existing_click,
        ids.OFFER_CANCEL: narrowing.offer_cancel_click,
        ids.MODAL_CLUSTER: modals.modal_cluster_changed,
        ids.MODAL_ROLE: modals.modal_role_changed,
    }
    forms: dict[str, Listener] = {
        ids.NARROW_MODAL: narrowing.narrow_submitted,
        ids.REQUEST_MODAL: modals.request_submitted,
        ids.DENY_MODAL: modals.deny_submitted,
        ids.EXTEND_MODAL: modals.extend_submitted,
    }
    for action_id, on_click in clicks.items():
        app.action(action_id)(on_click)
    for callback_id, on_submit in forms.items():
        app.view(callback_id)(on_submit)
    app.event("app_home_opened")(events.home_opened)
    app.event("user_change")(events.user_changed)
    app.event("subteam_created")(events.usergroup_changed)
    app.event("subteam_updated")(events.usergroup_changed)
    app.event("subteam_members_changed")(events.usergroup_members_changed)


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
        return BoltResponse(status=200, body=json.dumps(ephemeral(our_fault())))
    return BoltResponse(status=200, body="")
