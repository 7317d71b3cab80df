"""Provisioning and revoking a grant's objects: ServiceAccount, binding, token.

Every operation is idempotent. Object names derive from the grant id, so a
retried or resumed :func:`provision` finds what an earlier attempt made
instead of making it twice; labels tell ours apart from look-alikes we must
not touch (:class:`~k8s.errors.NotManagedError`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from kubernetes import client

from k8s import names
from k8s.clients import ClusterClient
from k8s.errors import Conflict, MissingNamespaceError, NotFound, NotManagedError
from k8s.grants.objects import (
    GrantSpec,
    ObjectKind,
    ObjectRef,
    annotate_objects,
    object_call,
    object_metadata,
    objects_of,
    owned_by,
    rfc3339,
)
from k8s.grants.tokens import IssuedToken, issue_token


async def _create_or_adopt(
    c: ClusterClient,
    create: Callable[..., Any],
    read: Callable[..., Any],
    kind: ObjectKind,
    grant_id: str,
) -> ObjectRef:
    """Create an object; if it exists, accept it only if it is this grant's."""
    created = True
    try:
        obj = await c.call(create)
    except Conflict:  # AlreadyExists: ours from an earlier attempt, or someone else's
        obj, created = await c.call(read), False
    meta = obj.metadata
    if not created and not owned_by(meta, grant_id):
        where = f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name
        raise NotManagedError(
            f"cluster {c.name}: {kind} {where} already exists and is not managed by "
            f"accessbot for grant {grant_id}; refusing to touch it",
            cluster=c.name,
        )
    return ObjectRef(kind, meta.namespace, meta.name, meta.uid, created)


async def _require_namespace(c: ClusterClient, namespace: str, purpose: str) -> None:
    try:
        await c.call(c.core.read_namespace, namespace)
    except NotFound as exc:
        raise MissingNamespaceError(
            f"cluster {c.name}: namespace {namespace!r} ({purpose}) does not exist",
            cluster=c.name,
            status=exc.status,
        ) from exc.__cause__


async def ensure_service_account(c: ClusterClient, spec: GrantSpec) -> ObjectRef:
    body = client.V1ServiceAccount(
        metadata=object_metadata(spec, spec.sa_name, spec.sa_namespace),
        automount_service_account_token=False,
    )
    return await _create_or_adopt(
        c,
        partial(c.core.create_namespaced_service_account, spec.sa_namespace, body),
        partial(c.core.read_namespaced_service_account, spec.sa_name, spec.sa_namespace),
        "ServiceAccount",
        spec.grant_id,
    )


def _subject(spec: GrantSpec) -> client.RbacV1Subject:
    return client.RbacV1Subject(
        kind="ServiceAccount", name=spec.sa_name, namespace=spec.sa_namespace
    )


def _role_ref(spec: GrantSpec) -> client.V1RoleRef:
    return client.V1RoleRef(
        api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=spec.cluster_role
    )


async def ensure_binding(c: ClusterClient, spec: GrantSpec) -> ObjectRef:
    name = spec.binding_name
    if spec.scope == "cluster":
        crb = client.V1ClusterRoleBinding(
            metadata=object_metadata(spec, name, None),
            role_ref=_role_ref(spec),
            subjects=[_subject(spec)],
        )
        return await _create_or_adopt(
            c,
            partial(c.rbac.create_cluster_role_binding, crb),
            partial(c.rbac.read_cluster_role_binding, name),
            "ClusterRoleBinding",
            spec.grant_id,
        )
    ns = _target_namespace(spec)
    rb = client.V1RoleBinding(
        metadata=object_metadata(spec, name, ns),
        role_ref=_role_ref(spec),
        subjects=[_subject(spec)],
    )
    return await _create_or_adopt(
        c,
        partial(c.rbac.create_namespaced_role_binding, ns, rb),
        partial(c.rbac.read_namespaced_role_binding, name, ns),
        "RoleBinding",
        spec.grant_id,
    )


def _target_namespace(spec: GrantSpec) -> str:
    if not spec.namespace:
        raise ValueError(f"grant {spec.grant_id}: a namespaced grant needs a namespace")
    return spec.namespace


async def provision(
    c: ClusterClient,
    spec: GrantSpec,
    *,
    now: dt.datetime | None = None,
    on_step: Callable[[str], Any] | None = None,
) -> IssuedToken:
    """Make (or finish making) a grant's objects and mint its token.

    ``on_step`` is called after each object exists; the workflow uses it to
    record progress and tests use it to crash at exact points.
    """
    await _require_namespace(c, spec.sa_namespace, "where accessbot creates ServiceAccounts")
    if spec.scope == "namespace":
        await _require_namespace(c, _target_namespace(spec), "the namespace the grant is for")
    sa = await ensure_service_account(c, spec)
    _step(on_step, "service_account")
    binding = await ensure_binding(c, spec)
    _step(on_step, "binding")
    token = await issue_token(c, spec, now or dt.datetime.now(dt.UTC))
    if token.ends_at is not None and token.ends_at != spec.expires_at:
        # The cluster capped the token: the grant ends with it, and so do the objects.
        await annotate_objects(c, (sa, binding), {names.EXPIRES_AT: rfc3339(token.ends_at)})
    _step(on_step, "token")
    return replace(token, objects=(sa, binding))


def _step(on_step: Callable[[str], Any] | None, name: str) -> None:
    if on_step is not None:
        on_step(name)


async def revoke(c: ClusterClient, grant_id: str) -> list[str]:
    """Delete a grant's objects (found by label), ServiceAccount first: that kills its tokens.

    Returns ``Kind namespace/name`` of each object deleted; a second call
    returns an empty list.
    """
    deleted: list[str] = []
    for ref in await objects_of(c, grant_id):
        try:
            await c.call(object_call(c, ref, "delete"))
        except NotFound:  # deleted meanwhile
            continue
        deleted.append(ref.display)
    return deleted


async def revoke_objects(c: ClusterClient, refs: Sequence[ObjectRef]) -> list[str]:
    """Delete exactly these objects (ServiceAccounts first), each pinned by its UID.

    Two calls for a typical grant instead of three label-selector lists plus
    the deletes; the UID precondition means a same-name object made by
    someone else since is answered with 409 and left alone.
    """
    ordered = sorted(refs, key=lambda r: r.kind != "ServiceAccount")
    deleted: list[str] = []
    for ref in ordered:
        if await _delete_pinned(c, ref):
            deleted.append(ref.display)
    return deleted


async def _delete_pinned(c: ClusterClient, ref: ObjectRef) -> bool:
    body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=ref.uid))
    call = object_call(c, ref, "delete")
    try:
        await c.call(call, body=body)
        return True
    except (NotFound, Conflict):  # gone, or no longer the object we made
        return False
