"""What every Slack listener shares: the use cases it calls, the ports it reaches
people through, and answering the person once the ack has gone out.

Replies to a command or click go to its ``response_url`` as ephemeral messages
(they work in any channel, whether or not the app is a member); where there is
none (App Home, modals) the user gets a DM.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncRespond
from slack_sdk.errors import SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.core import Core
from bot.errors import NotAllowed, UnknownGrant
from bot.models import utcnow
from bot.policy import RequestRejected
from bot.ports import Directory, Notifier
from bot.slack.blocks import HomeData, Message, error_message, home_view
from bot.slack.blocks.replies import form_not_opened, our_fault, refused, sentence, slack_failed
from bot.slack.client import error_code
from bot.slack.home import clicked_in_home
from bot.slack.payloads import action_value, clicker, ephemeral, responder
from bot.usecases.reports import ReportAccess

__all__ = ["RESPONSES_PER_COMMAND", "Listeners", "Surface"]

log = logging.getLogger(__name__)

JSON = dict[str, Any]
# A click's slow part: (grant id, clicker, payload) -> the answer, if any.
Work = Callable[[str, str, JSON], Awaitable[Message | None]]
ClickListener = Callable[[AsyncAck, JSON, JSON, AsyncRespond], Awaitable[None]]

# response_url accepts 5 posts in 30 minutes; keep one for a final note.
RESPONSES_PER_COMMAND = 4


class Surface:
    """The listeners' shared state and replies.

    Parameters:
        core: the composition root: the workflow facade, the policy, the
            permission checks, the reports and the delivery de-duplication.
        client: the Slack Web API client (modals, App Home, uploads).
        report_access: who may run ``/k8s nodes`` and ``/k8s helm``.
    """

    def __init__(self, core: Core, client: AsyncWebClient, report_access: ReportAccess) -> None:
        self.workflow = core.workflow
        self.policy = core.policy
        self.notifier: Notifier = core.workflow.notifier
        self.directory: Directory = core.workflow.directory
        self.permissions = core.permissions
        self.reports = core.reports
        self.deliveries = core.deliveries
        self.client = client
        self.report_access = report_access
        self.notifier.use_permissions(self.permissions)

    async def answer(
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
        except NotAllowed as exc:  # the use case has audited the refusal
            message = refused(exc)
        except (RequestRejected, UnknownGrant) as exc:
            message = error_message(sentence(exc))
        except SlackClientError as exc:
            # Only when Slack failed and nothing was cached to fall back on.
            log.warning("%s by %s needed Slack, which failed: %s", what, user, error_code(exc))
            message = slack_failed(error_code(exc))
        except Exception:
            log.exception("%s by %s failed (grant %s)", what, user, grant_id or "-")
            message = our_fault()
        if message is not None:
            await self.send(user, respond, message)

    async def send(self, user: str, respond: AsyncRespond | None, message: Message) -> None:
        """Privately: via the response_url when there is one, else in a DM."""
        if respond is None:
            await self.notifier.send_dm(user, message)
            return
        reply = {**ephemeral(message), "replace_original": False}
        try:
            session, url = self.client.session, respond.response_url
            if session is None or url is None:
                await respond(**reply)
                return
            # Bolt's respond() opens a new connection (and TLS handshake) per reply;
            # the Web API client's session keeps one open to hooks.slack.com.
            hook = AsyncWebhookClient(url, session=session, proxy=respond.proxy, ssl=respond.ssl)
            answer = await hook.send_dict(reply)
            if answer.status_code != 200:
                log.warning(
                    "response_url refused the reply: %s %s", answer.status_code, answer.body
                )
        except (SlackClientError, ValueError, OSError) as exc:
            log.warning("could not answer via response_url: %s", error_code(exc))

    async def send_nth(
        self, user: str, respond: AsyncRespond | None, message: Message, sent: int
    ) -> int:
        """Send the ``sent``-th reply of one command (counted from 0); returns ``sent + 1``.

        A response_url takes 5 posts: past RESPONSES_PER_COMMAND the rest goes to the DM.
        """
        await self.send(user, respond if sent < RESPONSES_PER_COMMAND else None, message)
        return sent + 1

    async def upload(self, user: str, filename: str, content: str) -> None:
        """A text file into the user's DM (a report or a permission list); failures logged."""
        try:
            opened = await self.client.conversations_open(users=user)
            channel = str((opened.get("channel") or {}).get("id") or "")
            await self.client.files_upload_v2(
                channel=channel, content=content.encode(), filename=filename
            )
        except SlackClientError as exc:
            log.error("could not upload report %s for %s: %s", filename, user, error_code(exc))

    async def open_view(self, trigger_id: str, view: JSON, user: str) -> None:
        """``views.open``; when Slack refuses (usually a trigger over 3 s old), say so."""
        try:
            await self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackClientError as exc:
            log.warning("views.open for %s failed: %s", user, error_code(exc))
            await self.notifier.send_dm(user, form_not_opened())

    async def refresh_home(self, body: JSON) -> None:
        """Redraw App Home after a click made there."""
        if clicked_in_home(body):
            await self.publish_home(clicker(body))

    async def publish_home(self, user: str) -> None:
        """``views.publish`` the user's App Home: their live grants, what awaits them."""
        if not user:
            return
        try:
            mine = await self.workflow.list_grants(user)
            data = HomeData(mine=mine, awaiting=await self.workflow.awaiting(user))
        except NotAllowed:  # offboarded: audited by the use case; nothing to show
            return
        try:
            await self.client.views_publish(user_id=user, view=home_view(data, utcnow()))
        except SlackClientError as exc:
            log.warning("views.publish for %s failed: %s", user, error_code(exc))


class Listeners:
    """A group of listeners (slash commands, buttons, modals, events).

    Parameters:
        surface: what every group shares (use cases, ports, replies).
    """

    def __init__(self, surface: Surface) -> None:
        self.surface = surface
        self.workflow = surface.workflow
        self.policy = surface.policy

    def on_click(self, what: str, work: Work) -> ClickListener:
        """A button's listener: ack at once, then the slow part, then the answer.

        Bolt passes ``ack``, ``body``, ``action`` and ``respond`` by these names.
        """

        async def listener(ack: AsyncAck, body: JSON, action: JSON, respond: AsyncRespond) -> None:
            await ack()
            user, grant_id = clicker(body), action_value(action)
            await self.surface.answer(
                user, responder(body, respond), what, grant_id, work(grant_id, user, body)
            )

        return listener
