"""Revocation receipts: proof, asked of the cluster, that an ended grant's access is gone.

A receipt records one check per object (gone by its recorded UID) and per
representative SubjectAccessReview (no longer allowed). One failed receipt at
most (the alert), then the verified one: the fact the offboarding webhook
reports as ``verified``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from bot.audit import receipt_summary
from bot.models import Grant, Receipt
from bot.store import Change
from bot.usecases.deps import SYSTEM, Deps
from k8s import grants as k8s_grants
from k8s import names
from k8s import rbac as k8s_rbac
from k8s.errors import ClusterError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Receipts:
    """Checking on a cluster that an ended grant's access is gone, and recording it."""

    deps: Deps

    async def receipt(self, grant_id: str, cluster_name: str, *, again: bool = False) -> bool:
        """Verify an ended grant's access is gone and record the receipt; True when verified.

        One receipt per end: a failed one at most once (the alert), then the
        verified one (the fact the webhook reports as ``verified``). A grant
        already verified only has its time moved when ``again`` (objects were
        found and deleted since: a provisioning attempt that raced the end).
        """
        deps = self.deps
        grant = await deps.store.get(grant_id)
        if grant is None or grant.kind != "access" or not grant.ended:
            return True  # nothing of an ended grant to prove (never a live one's step)
        if grant.receipt is not None and grant.receipt.verified:
            if again:
                await self.mark_gone(grant_id, deps.clock(), again=True)
            return True
        checks = await self._check_gone(grant, cluster_name)
        verified = all(c.gone for c in checks)
        at = deps.clock()
        receipt = Receipt(verified=verified, at=at, checks=tuple(str(c) for c in checks))
        event = "verified" if verified else "verification_failed"
        text = receipt_summary(grant, receipt)

        def decide(g: Grant) -> Change | None:
            if g.receipt is not None and (g.receipt.verified or not verified):
                return None  # recorded already: one failed receipt, one verified
            update: dict[str, object] = {"receipt": receipt}
            if verified:
                update["objects_gone_at"] = at
            return Change(g.model_copy(update=update).noted(event, SYSTEM, at, text))

        await deps.store.update(grant_id, decide)
        if not verified:
            log.error("grant %s: access NOT verified gone on %s: %s", grant_id, cluster_name,
                      "; ".join(str(c) for c in checks if not c.gone),
                      extra={"grant_id": grant_id})  # fmt: skip
        return verified

    async def _check_gone(self, grant: Grant, cluster_name: str) -> list[k8s_grants.GoneCheck]:
        """The checks of a receipt; a cluster that does not answer is a failed check."""
        cluster = self.deps.clusters[cluster_name]
        sa_ns = self.deps.policy.clusters[grant.cluster].namespace
        sa_name = names.service_account_name(grant.handle, grant.id)
        sa_user = f"system:serviceaccount:{sa_ns}:{sa_name}"
        try:
            rules = (await k8s_rbac.cluster_role_rules(cluster, [grant.cluster_role])).get(
                grant.cluster_role
            )
        except ClusterError:
            rules = None  # unreadable role: the fallback question still tells
        where = grant.namespace if grant.scope == "namespace" else None
        reviews = k8s_grants.representative_reviews(rules, where)
        try:
            return await k8s_grants.verify_gone(cluster, grant.id, sa_user, grant.objects, reviews)
        except ClusterError as exc:
            return [k8s_grants.GoneCheck(f"cluster {cluster_name}", False, f"no answer ({exc})")]

    async def mark_gone(self, grant_id: str, at: datetime, *, again: bool = False) -> None:
        """Record that an ended grant's objects were deleted (a fact the webhook reports).

        ``again``: objects were found and deleted after an earlier confirmation
        (a provisioning attempt that raced the end): the later time is the truth.
        """
        await self.deps.store.update(
            grant_id,
            lambda g: (
                Change(g.model_copy(update={"objects_gone_at": at}))
                if g.ended and g.kind == "access" and (g.objects_gone_at is None or again)
                else None
            ),
        )
