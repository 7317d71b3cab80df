"""A grant's objects on a cluster: what they are, how they are labelled, how to find them.

Every object a grant makes carries AccessBot's labels (managed-by, grant id)
and the grant's facts as annotations (contract: "Kubernetes objects"), so
ours are told apart from look-alikes, found again after a crash, and listed
by the reconciler. Names derive from the grant id (:mod:`k8s.names`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal

from kubernetes import client

from k8s import names
from k8s.clients import ClusterClient
from k8s.errors import Conflict, Invalid, NotFound
from k8s.paging import DEFAULT_PAGE_SIZE, list_all

Scope = names.Scope  # one Scope for k8s and bot
ObjectKind = Literal["ServiceAccount", "RoleBinding", "ClusterRoleBinding"]


@dataclass(frozen=True)
class GrantSpec:
    """What the cluster needs to know about one approved grant.

    ``grant_id``: the grant's id (labels, object names). ``requester``: Slack
    user id. ``handle``: human-readable name in object names. ``role``: the
    policy's role name; ``cluster_role``: the ClusterRole it binds. ``scope``:
    "namespace" (a RoleBinding in ``namespace``) or "cluster" (a
    ClusterRoleBinding; ``namespace`` None). ``sa_namespace``: where the
    ServiceAccount is made. ``expires_at``: aware datetime the grant ends.
    ``approved_by``: Slack user ids of the approvers (default none).
    """

    grant_id: str
    requester: str  # Slack user ID
    handle: str  # human-readable name for object names
    role: str
    cluster_role: str
    scope: Scope
    namespace: str | None  # target namespace for scope "namespace"
    sa_namespace: str
    expires_at: dt.datetime
    approved_by: tuple[str, ...] = ()

    @property
    def sa_name(self) -> str:
        return names.service_account_name(self.handle, self.grant_id)

    @property
    def binding_name(self) -> str:
        return names.binding_name(self.sa_name)

    @property
    def sa_user(self) -> str:
        return f"system:serviceaccount:{self.sa_namespace}:{self.sa_name}"


@dataclass(frozen=True)
class ObjectRef:
    """One object a grant owns, pinned by UID so a later delete can only hit it."""

    kind: ObjectKind
    namespace: str | None
    name: str
    uid: str
    created: bool = True  # False when an earlier attempt had made it

    @property
    def display(self) -> str:
        """``Kind namespace/name``, or ``Kind name`` for a cluster-scoped object."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


@dataclass(frozen=True)
class ManagedObject:
    """One object labelled as AccessBot's, with the grant facts its annotations hold.

    ``expires_at`` is None when the annotation is missing or unreadable.
    """

    ref: ObjectRef
    grant_id: str
    requester: str
    expires_at: dt.datetime | None
    approved_by: tuple[str, ...] = ()

    @property
    def kind(self) -> ObjectKind:
        return self.ref.kind

    @property
    def namespace(self) -> str | None:
        return self.ref.namespace

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def uid(self) -> str:
        return self.ref.uid


def facts(spec: GrantSpec) -> dict[str, str]:
    """The facts every object of a grant carries (contract: "Kubernetes objects")."""
    return grant_annotations(spec.requester, spec.role, spec.expires_at, spec.approved_by)


def grant_annotations(
    requester: str, role: str, expires_at: dt.datetime, approved_by: Sequence[str]
) -> dict[str, str]:
    """The annotations (:mod:`k8s.names` keys) that record a grant's facts on its objects."""
    return {
        names.REQUESTER: requester,
        names.ROLE: role,
        names.EXPIRES_AT: rfc3339(expires_at),
        names.APPROVED_BY: ",".join(approved_by),
    }


def object_metadata(spec: GrantSpec, name: str, namespace: str | None) -> client.V1ObjectMeta:
    """Metadata of a new object of the grant: its name, our labels, the grant's facts."""
    return client.V1ObjectMeta(
        name=name,
        namespace=namespace,
        labels={names.MANAGED_BY: names.MANAGED_BY_VALUE, names.GRANT_ID: spec.grant_id},
        annotations=facts(spec),
    )


def rfc3339(at: dt.datetime) -> str:
    """``at`` in UTC as ``2026-01-02T03:04:05Z``, the form the annotations hold."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> dt.datetime | None:
    """An annotation's time; None when missing or not in :func:`rfc3339`'s form."""
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def owned_by(meta: client.V1ObjectMeta | None, grant_id: str) -> bool:
    """Whether an object's labels say AccessBot made it for ``grant_id``."""
    labels = (meta.labels if meta else None) or {}
    return bool(
        labels.get(names.MANAGED_BY) == names.MANAGED_BY_VALUE
        and labels.get(names.GRANT_ID) == grant_id
    )


def sa_lister(c: ClusterClient) -> Callable[..., Any]:
    """The list call for grant ServiceAccounts, bound to the cluster's users' namespace."""
    # Only the users' namespace: the bot has no ServiceAccount rights elsewhere.
    return partial(c.core.list_namespaced_service_account, c.sa_namespace)


def object_call(
    c: ClusterClient, ref: ObjectRef, verb: Literal["read", "patch", "delete"]
) -> Callable[..., Any]:
    """The client method for ``verb`` on the object ``ref`` names, its name (and namespace) bound.

    ``patch`` takes ``body=``, ``delete`` takes ``body=`` (delete options).
    """
    if ref.kind == "ClusterRoleBinding":
        return partial(getattr(c.rbac, f"{verb}_cluster_role_binding"), ref.name)
    if ref.kind == "ServiceAccount":
        method = getattr(c.core, f"{verb}_namespaced_service_account")
    else:
        method = getattr(c.rbac, f"{verb}_namespaced_role_binding")
    return partial(method, ref.name, ref.namespace or "")


async def objects_of(c: ClusterClient, grant_id: str) -> list[ObjectRef]:
    """Every object labelled with ``grant_id`` (UIDs included), ServiceAccounts first."""
    selector = names.grant_selector(grant_id)
    return [o.ref for o in await _listed(c, selector)]


async def _listed(
    c: ClusterClient, selector: str, page_size: int = DEFAULT_PAGE_SIZE
) -> list[ManagedObject]:
    sources: list[tuple[ObjectKind, Callable[..., Any]]] = [
        ("ServiceAccount", sa_lister(c)),
        ("RoleBinding", c.rbac.list_role_binding_for_all_namespaces),
        ("ClusterRoleBinding", c.rbac.list_cluster_role_binding),
    ]
    found: list[ManagedObject] = []
    for kind, fn in sources:
        items = await list_all(c, fn, label_selector=selector, page_size=page_size)
        found.extend(_managed(kind, o) for o in items)
    return found


def _managed(kind: ObjectKind, obj: Any) -> ManagedObject:
    meta = obj.metadata
    labels = meta.labels or {}
    found = meta.annotations or {}
    return ManagedObject(
        ref=ObjectRef(kind, meta.namespace, meta.name, meta.uid or ""),
        grant_id=labels.get(names.GRANT_ID, ""),
        requester=found.get(names.REQUESTER, ""),
        expires_at=parse_rfc3339(found.get(names.EXPIRES_AT)),
        approved_by=tuple(a for a in found.get(names.APPROVED_BY, "").split(",") if a),
    )


async def list_managed(c: ClusterClient, page_size: int = DEFAULT_PAGE_SIZE) -> list[ManagedObject]:
    """Every object on the cluster labelled as AccessBot's (``page_size`` items per list call)."""
    return await _listed(c, names.MANAGED_SELECTOR, page_size)


async def annotate(c: ClusterClient, grant_id: str, facts: dict[str, str]) -> list[str]:
    """Set these annotations on every object of the grant (found by label).

    Idempotent. Returns ``Kind namespace/name`` of each object patched; an
    object deleted meanwhile is skipped. Raises ClusterError otherwise.
    """
    refs = [replace(ref, uid="") for ref in await objects_of(c, grant_id)]
    return await annotate_objects(c, refs, facts)


async def annotate_objects(
    c: ClusterClient, refs: Sequence[ObjectRef], annotations: dict[str, str]
) -> list[str]:
    """Merge ``annotations`` into each object's ``metadata.annotations``.

    A JSON merge patch of annotations only: labels, subjects and the role stay
    as they are (the chart's admission policy allows the bot nothing more).
    Used when the cluster shortened a token or a grant was extended, so the
    objects say what the record says (the reconciler trusts the annotation).
    A ref with a UID is pinned: a same-name object made by someone else since
    is refused by the apiserver (UIDs are immutable) and left alone, as is a
    deleted one. Returns ``Kind namespace/name`` of each object patched;
    raises ClusterError for anything else.
    """
    patched: list[str] = []
    for ref in refs:
        meta: dict[str, Any] = {"annotations": annotations}
        if ref.uid:
            meta["uid"] = ref.uid
        body = {"metadata": meta}
        call = partial(object_call(c, ref, "patch"), body=body)
        try:
            await c.call(call)
        except (NotFound, Conflict, Invalid):  # deleted, or the UID no longer matches
            continue
        patched.append(ref.display)
    return patched
