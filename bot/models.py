"""The records AccessBot keeps: one ``Grant`` per access request.

A request and the grant it becomes share one id: the Approve button, the
revoke command and the Kubernetes labels all name the same thing, so there is
no mapping to lose in a crash.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from bot.lifecycle import LIVE, State, Tally, Transition, is_terminal, transition
from bot.policy import ResolvedRequest, Scope
from k8s.grants import ObjectRef

Kind = Literal["access", "extend"]


def new_id() -> str:
    """10 lowercase base32 characters: fits Kubernetes names and reads aloud well."""
    return base64.b32encode(secrets.token_bytes(5)).decode().lower()


def utcnow() -> datetime:
    return datetime.now(UTC)


class Step(BaseModel):
    """A recorded transition, as stored."""

    model_config = ConfigDict(frozen=True)

    from_state: State
    to_state: State
    actor: str
    at: datetime
    reason: str = ""
    # Set for a recorded event that is not a state change (an extension of an
    # active grant): the audit stream names it instead of the unchanged state.
    event: str | None = None


class MessageRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: str
    ts: str


def _stored(ref: ObjectRef) -> dict[str, str | None]:
    # Exactly the four facts a record keeps: whether this attempt created the
    # object (``created``) matters only during the attempt.
    return {"kind": ref.kind, "namespace": ref.namespace, "name": ref.name, "uid": ref.uid}


# An object on the cluster a grant made, pinned by UID for an exact delete: the one
# record type k8s.grants returns and a Grant keeps, stored as its four fields.
StoredObject = Annotated[ObjectRef, PlainSerializer(_stored)]
ClusterObject = ObjectRef  # the name this record had before it was k8s.grants.ObjectRef


class Receipt(BaseModel):
    """The revocation receipt: what the bot checked on the cluster after a grant ended.

    ``verified``: every check showed the access gone (objects 404 by recorded
    UID, SubjectAccessReviews not allowed). ``at``: when the checks finished,
    the honest bound on when access ended (the apiserver may still honour an
    already-authenticated token for about 10 s after its ServiceAccount is
    gone). ``checks``: one line per check, "what: answer".
    """

    model_config = ConfigDict(frozen=True)

    verified: bool
    at: datetime
    checks: tuple[str, ...] = ()


class BreakGlass(BaseModel):
    """A break-glass grant's ratification (bot.usecases.breakglass): taken without
    approval, revoked unless ``approvals_required`` people ratify it within
    ``ratify_within_s`` seconds of its activation. ``ratified_at``: when the last
    ratification needed came (None: not ratified)."""

    model_config = ConfigDict(frozen=True)

    ratify_within_s: int
    approvals_required: int
    ratified_by: tuple[str, ...] = ()
    ratified_at: datetime | None = None

    @property
    def ratify_within(self) -> timedelta:
        return timedelta(seconds=self.ratify_within_s)


class Grant(BaseModel):
    """A request for access and, once approved, the access itself."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: Kind = "access"
    state: State = State.PENDING
    requester: str
    handle: str
    role: str
    cluster: str
    namespace: str | None
    scope: Scope
    cluster_role: str
    duration_s: int
    reason: str
    approvals_required: int
    approvals: tuple[str, ...] = ()
    denied_by: str | None = None
    created_at: datetime
    pending_until: datetime
    expires_at: datetime | None = None
    # Scheduled access: approved now, made at this time (None: at approval). An
    # optional field: records stored before it existed load with None (no migration).
    starts_at: datetime | None = None
    # For kind == "extend": the grant being extended. An approved extension
    # request stays "approved": its effect lives on the grant it extended.
    extends: str | None = None
    # Extension request ids applied to this grant, so a replayed job cannot
    # extend twice.
    extensions: tuple[str, ...] = ()
    # The extension offered when the owner asked again for this access (seconds; None:
    # no offer pending). The offer's Extend button takes it (bot.usecases.offers).
    offered_extension_s: int | None = None
    card: MessageRef | None = None
    delivered_file: str | None = None
    # Files of kubeconfigs delivered again (an extension's fresh token): the
    # end deletes them from Slack with the first.
    later_files: tuple[str, ...] = ()
    # Recorded on activation; None means unknown (cleanup then goes by label).
    objects: tuple[StoredObject, ...] | None = None
    # Which provisioning attempt may deliver, and since when: a second attempt
    # (a reclaimed job) must not send a second kubeconfig while the first may
    # still be recording its delivery.
    delivery_attempt: str | None = None
    delivery_claimed_at: datetime | None = None
    failure: str | None = None
    # What the cluster honours, recorded before the kubeconfig is delivered:
    # the cluster's max token lifetime when it cut the latest token (and so
    # the grant) short, and whether the issued file skips TLS verification.
    token_cap_s: int | None = None
    tls_insecure: bool = False
    # When the bot last confirmed that none of this grant's objects exist on
    # its cluster (deleted and looked for): "revoked" as a fact, not a hope.
    objects_gone_at: datetime | None = None
    # The latest revocation receipt: a failed one until a re-check verifies.
    # Set together with objects_gone_at, which is the verified receipt's time.
    receipt: Receipt | None = None
    # The expiry the "ends soon" reminder was sent for (bot.agenda: a new expiry, from
    # an extension, is owed a reminder of its own).
    reminded_for: datetime | None = None
    # Set for a break-glass grant (taken at once, to be ratified).
    break_glass: BreakGlass | None = None
    # When a pending request's approvers were reminded of it, and when it was escalated
    # (bot.agenda, bot.usecases.nudges): recorded before the post, so each happens once.
    approvers_reminded_at: datetime | None = None
    escalated_at: datetime | None = None
    history: tuple[Step, ...] = ()
    version: int = 0

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=self.duration_s)

    @property
    def decided(self) -> ResolvedRequest:
        """What was decided for this grant, in the shape the policy checks."""
        return ResolvedRequest(**{f.name: getattr(self, f.name) for f in fields(ResolvedRequest)})

    @property
    def is_new(self) -> bool:
        """The record as first stored: every update bumps the version past 0."""
        return self.version == 0

    @property
    def tally(self) -> Tally:
        return Tally(self.approvals_required, self.approvals)

    @property
    def live(self) -> bool:
        """Access exists or is on its way (extension requests never are)."""
        return self.kind == "access" and self.state in LIVE

    @property
    def ended(self) -> bool:
        return is_terminal(self.state)

    @property
    def may_have_objects(self) -> bool:
        """Objects may exist on the cluster: provisioning began, removal is unconfirmed."""
        if self.kind != "access" or self.objects_gone_at is not None:
            return False
        return self.objects is not None or any(
            s.to_state == State.PROVISIONING for s in self.history
        )

    @property
    def kubeconfig_filename(self) -> str:
        return f"{self.cluster}-{self.role}.kubeconfig"

    def moved(self, target: State, actor: str, at: datetime, reason: str = "") -> Grant:
        """This grant in ``target`` with the step recorded; raises IllegalTransition."""
        step: Transition = transition(self.state, target, actor, at, reason)
        return self.model_copy(
            update={
                "state": target,
                "history": (*self.history, Step(**step.__dict__)),
            }
        )

    def noted(self, event: str, actor: str, at: datetime, reason: str) -> Grant:
        """This grant with an audited event that leaves its state as it is."""
        step = Step(
            from_state=self.state, to_state=self.state, actor=actor, at=at, reason=reason,
            event=event,
        )  # fmt: skip
        return self.model_copy(update={"history": (*self.history, step)})

    def last_actor(self) -> str:
        return self.history[-1].actor if self.history else self.requester


def new_grant(
    resolved: ResolvedRequest, *, handle: str, now: datetime, pending_ttl: timedelta
) -> Grant:
    """A pending request for ``resolved``: every decided field as the policy resolved it."""
    decided = {f.name: getattr(resolved, f.name) for f in fields(resolved)}
    duration: timedelta = decided.pop("duration")
    return Grant(
        id=new_id(),
        handle=handle,
        duration_s=int(duration.total_seconds()),
        created_at=now,
        pending_until=now + pending_ttl,
        **decided,
    )


class Offboarding(BaseModel):
    """Why and when a user was blocked; present means they may request nothing."""

    model_config = ConfigDict(frozen=True)

    user: str
    at: datetime
    by: str
    reason: str = ""
    revoked: tuple[str, ...] = Field(default=())
    cancelled: tuple[str, ...] = Field(default=())
