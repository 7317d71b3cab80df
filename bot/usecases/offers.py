"""A request for access the requester already holds becomes an offer to extend it.

When the requester has an ACTIVE grant of the same role, cluster and namespace, a new
request makes no second grant: the answer is an :class:`ExtensionOffer` (Extend by the
requested duration / Cancel). The duration is kept server-side on the grant
(``Grant.offered_extension_s``), never in the button, and the Extend click takes it
(once) and runs the normal extension path (:class:`~bot.usecases.extensions.Extensions`:
approval if the role needs it, ``max_extensions``/``extend_after`` and the
``max_duration`` room, all checked again there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.extension_rules import check_extension_rules
from bot.lifecycle import ExtensionRejected, State, new_expiry, room_to_extend
from bot.models import Grant
from bot.policy import AccessRequestSpec, RequestRejected, ResolvedRequest, resolve_request
from bot.start_times import StartRequest
from bot.store import Change
from bot.usecases.deps import Deps
from bot.usecases.extensions import Extensions
from bot.usecases.requests import Requests


@dataclass(frozen=True)
class ExtensionOffer:
    """The answer to a request duplicating ``grant``: extend it ``by`` (the ``asked``
    duration, or less when the role's ``max_duration`` leaves less room), or
    ``refusal``, why it cannot be extended now (then there is nothing to click)."""

    grant: Grant
    by: timedelta
    asked: timedelta
    refusal: str | None = None


def duplicates(grant: Grant, resolved: ResolvedRequest) -> bool:
    """Whether ``grant`` is live access of exactly what ``resolved`` asks for."""
    return (
        grant.kind == "access"
        and grant.state == State.ACTIVE
        and grant.expires_at is not None
        and (grant.requester, grant.role, grant.cluster, grant.namespace)
        == (resolved.requester, resolved.role, resolved.cluster, resolved.namespace)
    )


@dataclass(frozen=True)
class Offers:
    """Requests that duplicate live grants, and their offers."""

    deps: Deps
    requests: Requests
    extensions: Extensions

    async def request(
        self, spec: AccessRequestSpec, start: StartRequest | None = None
    ) -> Grant | ExtensionOffer:
        """Submit ``spec`` as a request, or, when it duplicates a live grant, offer to
        extend that grant (recorded and audited on it) instead. A request for later
        (``start``) is always submitted: it is not the access held now."""
        deps = self.deps
        if start is not None:
            return await self.requests.submit(spec, start)
        await self.requests.authz.require_enabled(spec.requester, "request")
        resolved = resolve_request(deps.policy, spec)
        live = [g for g in await deps.store.by_user(spec.requester) if duplicates(g, resolved)]
        if not live:
            return await self.requests.submit(spec)
        grant, now = live[0], deps.clock()
        assert grant.expires_at is not None
        role = deps.policy.roles[grant.role]
        room = room_to_extend(grant.expires_at, now, role.max_duration)
        by = min(resolved.duration, room) if room > timedelta(0) else resolved.duration
        try:
            check_extension_rules(grant, role, grant.role, now)
            new_expiry(grant.expires_at, by, now, role.max_duration)
        except ExtensionRejected as exc:
            return ExtensionOffer(grant, by, resolved.duration, str(exc))
        seconds = int(by.total_seconds())
        why = f"asked again for this access ({spec.reason}); offered to extend it instead"
        updated = await deps.store.update(
            grant.id,
            lambda g: (
                Change(
                    g.model_copy(update={"offered_extension_s": seconds}).noted(
                        "extension_offered", spec.requester, now, why
                    )
                )
                if g.state == State.ACTIVE
                else None
            ),
        )
        if updated is None:  # ended meanwhile: an ordinary request after all
            return await self.requests.submit(spec)
        return ExtensionOffer(updated, by, resolved.duration)

    async def take(self, grant_id: str, user: str) -> Grant:
        """The offer's Extend click: extend by the offered duration, once.

        Returns what ``Extensions.extend`` returns (the grant, or the extension
        request). Raises NotAllowed (audited) for anyone but the grant's owner,
        RequestRejected when nothing is offered or the extension is not possible (the
        offer is kept then, to click again once it is).
        """
        deps = self.deps
        grant = await deps.grant(grant_id)
        await self.requests.authz.require_enabled(user, "extend", grant)
        if user != grant.requester:
            why = "only the grant's owner can take an offer to extend it"
            raise await self.requests.authz.refuse(user, "extend", grant, why)
        taken: list[int] = []

        def claim(g: Grant) -> Change | None:
            taken[:] = [g.offered_extension_s] if g.offered_extension_s else []
            return Change(g.model_copy(update={"offered_extension_s": None})) if taken else None

        if await deps.store.update(grant_id, claim) is None or not taken:
            raise RequestRejected(
                f"there is no extension offer pending on grant {grant_id} (it was taken or "
                f"cancelled); use /access extend {grant_id} -d DURATION"
            )
        try:
            return await self.extensions.extend(grant_id, user, timedelta(seconds=taken[0]))
        except RequestRejected:
            await self._offer_again(grant_id, taken[0])
            raise

    async def decline(self, grant_id: str, user: str) -> Grant:
        """The offer's Cancel click: the offer is withdrawn; the grant stays as it is."""
        grant = await self.deps.grant(grant_id)
        await self.requests.authz.require_owner_or_admin(grant, user, "cancel an offer on")
        await self.deps.store.update(
            grant_id,
            lambda g: (
                Change(g.model_copy(update={"offered_extension_s": None}))
                if g.offered_extension_s
                else None
            ),
        )
        return grant

    async def _offer_again(self, grant_id: str, seconds: int) -> None:
        await self.deps.store.update(
            grant_id,
            lambda g: (
                Change(g.model_copy(update={"offered_extension_s": seconds}))
                if g.state == State.ACTIVE and g.offered_extension_s is None
                else None
            ),
        )
