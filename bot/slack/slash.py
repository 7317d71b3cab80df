"""The slash commands: ``/access`` (request, list, revoke, extend, roles, the form) and
``/k8s`` (the cluster reports).

Each is parsed and checked against the policy before the ack (pure), so a
mistake is answered at once as the command's response; the rest runs after it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncRespond

from bot.errors import ClusterError
from bot.models import utcnow
from bot.policy import AccessRequestSpec, RequestRejected, resolve_request
from bot.policy_breakglass import resolve_break_glass
from bot.slack.blocks import (
    Message,
    ReportOutput,
    allowance_file,
    allowance_file_name,
    allowance_fits,
    error_message,
    grant_list_message,
    helm_output,
    help_message,
    nodes_output,
    roles_messages,
    standing_output,
)
from bot.slack.blocks.breakglass import break_glass_taken
from bot.slack.blocks.narrowing import offer_message
from bot.slack.blocks.replies import (
    extended,
    rest_in_dm,
    revoked,
    submitted,
    unknown_cluster,
)
from bot.slack.commands import (
    USAGE,
    BreakGlass,
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
from bot.slack.forms import request_modal, requestable_clusters, roles_on
from bot.slack.payloads import ephemeral, typed
from bot.slack.schedule import in_requesters_zone
from bot.slack.surface import RESPONSES_PER_COMMAND, Listeners
from bot.usecases.permissions import Allowance
from bot.usecases.reports import ReportKind
from bot.workflow import ExtensionOffer

JSON = dict[str, Any]


class SlashCommands(Listeners):
    """``/access`` and ``/k8s``."""

    # -- /access --------------------------------------------------------------------------

    async def access_command(self, ack: AsyncAck, command: JSON, respond: AsyncRespond) -> None:
        user = str(command["user_id"])
        try:
            parsed = parse_access(typed(command))
            if isinstance(parsed, Request):  # pure: answer at once
                check = resolve_break_glass if isinstance(parsed, BreakGlass) else resolve_request
                check(self.policy, _request_spec(parsed, user))
        except CommandError as exc:
            await ack(**ephemeral(error_message(exc.problem, exc.usage)))
            return
        except RequestRejected as exc:
            verb = "breakglass" if isinstance(parsed, BreakGlass) else "request"
            await ack(**ephemeral(error_message(str(exc), USAGE[verb])))
            return
        if isinstance(parsed, Help):
            await ack(**ephemeral(help_message("access")))
            return
        if isinstance(parsed, Roles):
            clusters = requestable_clusters(self.policy)
            if parsed.cluster is not None and parsed.cluster not in clusters:
                problem = unknown_cluster(parsed.cluster, clusters)
                await ack(**ephemeral(error_message(problem, USAGE["roles"])))
                return
            await ack()
            names = [parsed.cluster] if parsed.cluster else clusters
            await self.surface.answer(user, respond, "roles", "", self._roles(names, user, respond))
            return
        await ack()
        if isinstance(parsed, OpenModal):
            await self.surface.open_view(
                str(command["trigger_id"]), request_modal(self.policy), user
            )
            return
        target = getattr(parsed, "grant_id", "")
        await self.surface.answer(
            user, respond, type(parsed).__name__.lower(), target, self._access(parsed, user)
        )

    async def _access(self, cmd: Request | ListGrants | Revoke | Extend, user: str) -> Message:
        if isinstance(cmd, BreakGlass):
            taken = await self.workflow.take_break_glass(_request_spec(cmd, user))
            return break_glass_taken(taken, self.policy.approvals_channel)
        if isinstance(cmd, Request):
            start = cmd.start and await in_requesters_zone(self.surface.client, user, cmd.start)
            asked = await self.workflow.request(_request_spec(cmd, user), start)
            if isinstance(asked, ExtensionOffer):  # already held: extend it instead?
                return offer_message(asked)
            return submitted(asked, self.policy.approvals_channel)
        if isinstance(cmd, ListGrants):
            grants = await self.workflow.list_grants(user, everyone=cmd.everyone)
            return grant_list_message(grants, utcnow(), everyone=cmd.everyone)
        if isinstance(cmd, Revoke):
            return revoked(await self.workflow.revoke(cmd.grant_id, user))
        result = await self.workflow.extend(cmd.grant_id, user, cmd.duration)
        return extended(cmd.grant_id, result)

    async def _roles(self, clusters: list[str], user: str, respond: AsyncRespond) -> None:
        """``/access roles``: every role's permissions per cluster, read concurrently."""
        checks = {
            (cluster, role): self.surface.permissions.check_role(cluster, self.policy.roles[role])
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
                sent = await self.surface.send_nth(user, respond, message, sent)
            for _, permissions in entries:
                if (
                    isinstance(permissions, Allowance)
                    and permissions.exists
                    and not allowance_fits(permissions)
                ):
                    await self.surface.upload(
                        user, allowance_file_name(permissions), allowance_file(permissions)
                    )

    # -- /k8s -----------------------------------------------------------------------------

    async def k8s_command(self, ack: AsyncAck, command: JSON, respond: AsyncRespond) -> None:
        user = str(command["user_id"])
        try:
            parsed = parse_k8s(typed(command))
        except CommandError as exc:
            await ack(**ephemeral(error_message(exc.problem, exc.usage)))
            return
        if isinstance(parsed, Help):
            await ack(**ephemeral(help_message("k8s")))
            return
        known = self.surface.reports.cluster_names
        names = [parsed.cluster] if parsed.cluster else known
        unknown = [n for n in names if n not in known]
        if unknown:
            await ack(**ephemeral(error_message(unknown_cluster(unknown[0], known))))
            return
        await ack()
        await self.surface.answer(
            user, respond, "run a cluster report", "", self._reports(parsed, names, user, respond)
        )

    async def _reports(
        self, cmd: Nodes | Helm | Standing, names: list[str], user: str, respond: AsyncRespond
    ) -> Message | None:
        """Post each cluster's report; returns a closing note, if one is needed."""
        kind: ReportKind = (
            "standing"
            if isinstance(cmd, Standing)
            else "helm"
            if isinstance(cmd, Helm)
            else "nodes"
        )
        await self.surface.reports.authorize(user, kind, self.surface.report_access)
        sent = 0
        for name in names:
            for message in await self._report(cmd, name, user):
                sent = await self.surface.send_nth(user, respond, message, sent)
        if sent > RESPONSES_PER_COMMAND:
            return rest_in_dm()
        return None

    async def _report(self, cmd: Nodes | Helm | Standing, cluster: str, user: str) -> list[Message]:
        reports = self.surface.reports
        output: ReportOutput
        try:
            if isinstance(cmd, Standing):
                output = standing_output(await reports.standing(cluster))
            elif isinstance(cmd, Helm):
                output = helm_output(await reports.helm(cluster, cmd.namespace))
            else:
                output = nodes_output(await reports.nodes(cluster))
        except ClusterError as exc:
            return [error_message(str(exc))]
        if output.file_name and output.file_content is not None:
            await self.surface.upload(user, output.file_name, output.file_content)
        return list(output.messages)


def _request_spec(cmd: Request, user: str) -> AccessRequestSpec:
    """What ``/access request`` asks for, on behalf of ``user``."""
    # Positional, in AccessRequestSpec's field order: requester first, then as typed.
    return AccessRequestSpec(user, cmd.role, cmd.cluster, cmd.namespace, cmd.duration, cmd.reason)
