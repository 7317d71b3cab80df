"""Grant objects on a cluster: provision, revoke, list, verify.

Every operation is idempotent. Object names derive from the grant id, so a
retried or resumed ``provision`` finds what an earlier attempt made instead of
making it twice; labels tell ours apart from look-alikes we must not touch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
import math
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal, TypeVar

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from k8s import names
from k8s.clients import ClusterClient, api_error, status_of
from k8s.errors import ClusterError, MissingNamespaceError, NotManagedError
from k8s.kubeconfig import KubeconfigSpec, render_kubeconfig

MIN_TOKEN_SECONDS = 600  # the TokenRequest API's floor
Scope = names.Scope  # one Scope for k8s and bot (k8s.names)
T = TypeVar("T")


@dataclass(frozen=True)
class GrantSpec:
    """What the cluster needs to know about one approved grant."""

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

    kind: Literal["ServiceAccount", "RoleBinding", "ClusterRoleBinding"]
    namespace: str | None
    name: str
    uid: str
    created: bool = True  # False when an earlier attempt had made it


@dataclass(frozen=True)
class IssuedToken:
    """A minted token and what the cluster really granted.

    ``expires_at`` is the TokenRequest answer's ``status.expirationTimestamp``.
    ``requested_seconds`` is the ``expirationSeconds`` we asked for and
    ``lifetime_seconds`` what the apiserver applied (the JWT's ``exp - iat``),
    so ``shortened`` compares two numbers from one clock: the apiserver's.
    ``ends_at`` is when the grant must end for the cluster to honour every
    moment of it: the requested end, or the token's expiry if that is earlier.
    """

    token: str = field(repr=False)  # never in a repr, log line or traceback
    expires_at: dt.datetime
    objects: tuple[ObjectRef, ...] = ()
    requested_seconds: int = 0
    lifetime_seconds: int = 0
    ends_at: dt.datetime | None = None

    @property
    def shortened(self) -> bool:
        """The cluster gave the token less life than asked for (its max token expiration)."""
        return 0 < self.lifetime_seconds < self.requested_seconds


@dataclass(frozen=True)
class ManagedObject:
    kind: Literal["ServiceAccount", "RoleBinding", "ClusterRoleBinding"]
    namespace: str | None
    name: str
    grant_id: str
    requester: str
    expires_at: dt.datetime | None
    approved_by: tuple[str, ...] = ()
    uid: str = ""

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.kind, self.namespace, self.name, self.uid)


def facts(spec: GrantSpec) -> dict[str, str]:
    """The facts every object of a grant carries (contract: "Kubernetes objects")."""
    return grant_annotations(spec.requester, spec.role, spec.expires_at, spec.approved_by)


def grant_annotations(
    requester: str, role: str, expires_at: dt.datetime, approved_by: Sequence[str]
) -> dict[str, str]:
    return {
        names.REQUESTER: requester,
        names.ROLE: role,
        names.EXPIRES_AT: rfc3339(expires_at),
        names.APPROVED_BY: ",".join(approved_by),
    }


def _metadata(spec: GrantSpec, name: str, namespace: str | None) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(
        name=name,
        namespace=namespace,
        labels={names.MANAGED_BY: names.MANAGED_BY_VALUE, names.GRANT_ID: spec.grant_id},
        annotations=facts(spec),
    )


async def annotate(c: ClusterClient, grant_id: str, facts: dict[str, str]) -> list[str]:
    """Set these annotations on every object of the grant (found by label).

    Idempotent. Returns ``Kind namespace/name`` of each object patched; an
    object deleted meanwhile is skipped. Raises ClusterError otherwise.
    """
    selector = names.grant_selector(grant_id)
    refs: list[ObjectRef] = []
    for sa in await list_all(c, _sa_lister(c), selector):
        refs.append(ObjectRef("ServiceAccount", sa.metadata.namespace, sa.metadata.name, ""))
    for rb in await list_all(c, c.rbac.list_role_binding_for_all_namespaces, selector):
        refs.append(ObjectRef("RoleBinding", rb.metadata.namespace, rb.metadata.name, ""))
    for crb in await list_all(c, c.rbac.list_cluster_role_binding, selector):
        refs.append(ObjectRef("ClusterRoleBinding", None, crb.metadata.name, ""))
    return await annotate_objects(c, refs, facts)


def rfc3339(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _owned_by(meta: client.V1ObjectMeta | None, grant_id: str) -> bool:
    labels = (meta.labels if meta else None) or {}
    return bool(
        labels.get(names.MANAGED_BY) == names.MANAGED_BY_VALUE
        and labels.get(names.GRANT_ID) == grant_id
    )


async def _create_or_adopt(
    c: ClusterClient,
    create: Callable[..., Any],
    read: Callable[..., Any],
    kind: Any,
    grant_id: str,
) -> ObjectRef:
    """Create an object; if it exists, accept it only if it is this grant's."""
    created = True
    try:
        obj = await c.call(create)
    except ClusterError as exc:
        if status_of(exc) != 409:
            raise
        obj, created = await c.call(read), False
    meta = obj.metadata
    if not created and not _owned_by(meta, grant_id):
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
    except ClusterError as exc:
        if status_of(exc) == 404:
            raise MissingNamespaceError(
                f"cluster {c.name}: namespace {namespace!r} ({purpose}) does not exist",
                cluster=c.name,
            ) from exc
        raise


async def ensure_service_account(c: ClusterClient, spec: GrantSpec) -> ObjectRef:
    body = client.V1ServiceAccount(
        metadata=_metadata(spec, spec.sa_name, spec.sa_namespace),
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
            metadata=_metadata(spec, name, None),
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
        metadata=_metadata(spec, name, ns), role_ref=_role_ref(spec), subjects=[_subject(spec)]
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


def token_seconds(expires_at: dt.datetime, now: dt.datetime) -> int:
    """Seconds the token must live to cover the grant, at least the API minimum."""
    return max(MIN_TOKEN_SECONDS, math.ceil((expires_at - now).total_seconds()))


# Clock slack for a token whose lifetime cannot be read from its claims.
_SKEW = dt.timedelta(seconds=5)


async def issue_token(c: ClusterClient, spec: GrantSpec, now: dt.datetime) -> IssuedToken:
    """A TokenRequest token covering ``spec.expires_at``, and what the cluster made of it.

    The cluster may shorten it (``--service-account-max-token-expiration``):
    the answer's ``ends_at`` is then the token's expiry, never later. A grant
    shorter than the API's 600 s minimum gets a 600 s token and keeps its own
    end: the bot deletes the ServiceAccount then, which kills the token.
    Raises ClusterError.
    """
    seconds = token_seconds(spec.expires_at, now)
    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    resp = await c.call(
        c.core.create_namespaced_service_account_token, spec.sa_name, spec.sa_namespace, body
    )
    status = resp.status
    if status is None or not status.token:
        raise ClusterError(f"cluster {c.name}: TokenRequest returned no token", cluster=c.name)
    expires: dt.datetime = status.expiration_timestamp or spec.expires_at
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=dt.UTC)
    lifetime = _jwt_lifetime(status.token)
    if lifetime is None:
        # Not a readable JWT: judge by the timestamp, allowing for clock skew.
        short = expires < spec.expires_at - _SKEW
        lifetime = math.floor((expires - now).total_seconds()) if short else seconds
    token = IssuedToken(
        token=status.token, expires_at=expires, requested_seconds=seconds, lifetime_seconds=lifetime
    )
    ends = min(spec.expires_at, expires) if token.shortened else spec.expires_at
    return replace(token, ends_at=ends)


def _jwt_lifetime(token: str) -> int | None:
    """``exp - iat`` of a JWT's claims, read without verifying (it is our own fresh token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
        return int(claims["exp"]) - int(claims["iat"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None


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
        call = partial(_object_call(c, ref, "patch"), body=body)
        try:
            await c.call(call)
        except ClusterError as exc:
            if status_of(exc) not in (404, 409, 422):
                raise
            continue
        where = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
        patched.append(f"{ref.kind} {where}")
    return patched


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


async def _ignore_404(coro: Any) -> bool:
    try:
        await coro
        return True
    except ClusterError as exc:
        if status_of(exc) == 404:
            return False
        raise


async def revoke(c: ClusterClient, grant_id: str) -> list[str]:
    """Delete a grant's objects, ServiceAccount first: that is what kills its tokens.

    Returns ``Kind namespace/name`` of each object deleted; a second call
    returns an empty list.
    """
    selector = names.grant_selector(grant_id)
    deleted: list[str] = []
    sas = await list_all(c, _sa_lister(c), selector)
    for sa in sas:
        meta = sa.metadata
        if await _ignore_404(
            c.call(c.core.delete_namespaced_service_account, meta.name, meta.namespace)
        ):
            deleted.append(f"ServiceAccount {meta.namespace}/{meta.name}")
    rbs = await list_all(c, c.rbac.list_role_binding_for_all_namespaces, selector)
    for rb in rbs:
        meta = rb.metadata
        if await _ignore_404(
            c.call(c.rbac.delete_namespaced_role_binding, meta.name, meta.namespace)
        ):
            deleted.append(f"RoleBinding {meta.namespace}/{meta.name}")
    for crb in await list_all(c, c.rbac.list_cluster_role_binding, selector):
        if await _ignore_404(c.call(c.rbac.delete_cluster_role_binding, crb.metadata.name)):
            deleted.append(f"ClusterRoleBinding {crb.metadata.name}")
    return deleted


def _sa_lister(c: ClusterClient) -> Callable[..., Any]:
    # Only the users' namespace: the bot has no ServiceAccount rights elsewhere.
    return partial(c.core.list_namespaced_service_account, c.sa_namespace)


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
            where = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
            deleted.append(f"{ref.kind} {where}")
    return deleted


def _object_call(
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


async def _delete_pinned(c: ClusterClient, ref: ObjectRef) -> bool:
    body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=ref.uid))
    call = _object_call(c, ref, "delete")
    try:
        await c.call(call, body=body)
        return True
    except ClusterError as exc:
        if status_of(exc) in (404, 409):  # gone, or no longer the object we made
            return False
        raise


async def list_all(
    c: ClusterClient, list_fn: Callable[..., Any], label_selector: str, page_size: int = 500
) -> list[Any]:
    """Every item of a list call, following ``continue`` tokens page by page."""
    items: list[Any] = []
    token: str | None = None
    while True:
        page = await c.call(
            list_fn, label_selector=label_selector, limit=page_size, _continue=token
        )
        items.extend(page.items or [])
        token = page.metadata._continue if page.metadata else None
        if not token:
            return items


def _managed(kind: Any, obj: Any) -> ManagedObject:
    meta = obj.metadata
    labels = meta.labels or {}
    found = meta.annotations or {}
    return ManagedObject(
        kind=kind,
        namespace=meta.namespace,
        name=meta.name,
        grant_id=labels.get(names.GRANT_ID, ""),
        requester=found.get(names.REQUESTER, ""),
        expires_at=parse_rfc3339(found.get(names.EXPIRES_AT)),
        approved_by=tuple(a for a in found.get(names.APPROVED_BY, "").split(",") if a),
        uid=meta.uid or "",
    )


async def list_managed(c: ClusterClient, page_size: int = 500) -> list[ManagedObject]:
    """Every object on the cluster labelled as AccessBot's."""
    sel = names.MANAGED_SELECTOR
    sources: list[tuple[Any, Callable[..., Any]]] = [
        ("ServiceAccount", _sa_lister(c)),
        ("RoleBinding", c.rbac.list_role_binding_for_all_namespaces),
        ("ClusterRoleBinding", c.rbac.list_cluster_role_binding),
    ]
    found: list[ManagedObject] = []
    for kind, fn in sources:
        found.extend(_managed(kind, o) for o in await list_all(c, fn, sel, page_size))
    return found


@dataclass(frozen=True)
class Verification:
    username: str
    rules: int


_SELF_REVIEW_RESOURCES = frozenset(
    {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"}
)


async def verify(
    c: ClusterClient, spec: GrantSpec, token: IssuedToken, kubeconfig: str | None = None
) -> Verification:
    """Prove, with the issued kubeconfig exactly as the requester gets it, that it
    connects, authenticates as the grant's ServiceAccount and holds the role.

    ``kubeconfig`` is the rendered file (YAML text); None renders the one this
    cluster's trust and server make. It is loaded by the client library's own
    kubeconfig loader, so its server, CA, ``insecure-skip-tls-verify``,
    ``tls-server-name`` and ``proxy-url`` are what is tested, not the bot's.
    Uses only self-review APIs every authenticated identity may call, so the
    bot needs no extra RBAC to check its work.

    Raises ClusterError: not transient when the file's TLS trust is wrong (no
    retry fixes that), transient when the server cannot be reached or the new
    token or binding is not visible yet.
    """
    text = kubeconfig if kubeconfig is not None else _default_kubeconfig(c, spec, token)
    api = _kubeconfig_client(c, text)
    server = api.configuration.host
    try:
        authn = client.AuthenticationV1Api(api)
        review = await _as_user(c, server, authn.create_self_subject_review,
                                client.V1SelfSubjectReview())  # fmt: skip
        info = review.status.user_info if review.status else None
        username = info.username if info else None
        if username != spec.sa_user:
            raise ClusterError(
                f"cluster {c.name}: new token authenticates as {username!r}, not {spec.sa_user}",
                cluster=c.name,
            )
        ns = spec.namespace or spec.sa_namespace
        authz = client.AuthorizationV1Api(api)
        rules_review = await _as_user(
            c,
            server,
            authz.create_self_subject_rules_review,
            client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(namespace=ns)),
        )
        granted = [
            r
            for r in (rules_review.status.resource_rules if rules_review.status else None) or []
            if not set(r.resources or []) <= _SELF_REVIEW_RESOURCES
        ]
        if not granted:
            raise ClusterError(
                f"cluster {c.name}: token for {spec.sa_user} has no permissions from "
                f"ClusterRole {spec.cluster_role} in {ns}",
                cluster=c.name,
                transient=True,  # RBAC caches can lag a freshly created binding
            )
        return Verification(username=username, rules=len(granted))
    finally:
        api.close()


async def check_issued_trust(c: ClusterClient) -> None:
    """Connect to the server issued kubeconfigs name, with the trust they carry.

    No token is minted: a placeholder credential is sent and any HTTP answer
    (401 included) proves the TLS handshake and the route work. Raises
    ClusterError saying what a requester's kubectl would fail on.
    """
    spec = GrantSpec("probe", "", "probe", "", "", "cluster", None, c.sa_namespace,
                     dt.datetime.now(dt.UTC))  # fmt: skip
    api = _kubeconfig_client(c, _default_kubeconfig(c, spec, IssuedToken("probe", spec.expires_at)))
    try:
        await _as_user(c, api.configuration.host, client.VersionApi(api).get_code)
    except ClusterError as exc:
        if not isinstance(exc.__cause__, ApiException):  # no HTTP answer at all
            raise
    finally:
        api.close()


def _default_kubeconfig(c: ClusterClient, spec: GrantSpec, token: IssuedToken) -> str:
    return render_kubeconfig(
        KubeconfigSpec(
            cluster=c.name,
            server=c.server,
            ca_pem=c.trust.ca_pem,
            user=spec.sa_name,
            token=token.token,
            context=c.name,
            namespace=spec.namespace,
            trust=c.trust,
        )
    )


def _kubeconfig_client(c: ClusterClient, text: str) -> client.ApiClient:
    """An API client configured only from ``text``, as kubectl would read it."""
    cfg = client.Configuration()
    try:
        config.load_kube_config_from_dict(
            yaml.safe_load(text), client_configuration=cfg, persist_config=False
        )
    except (config.ConfigException, yaml.YAMLError, ValueError, OSError) as exc:
        raise ClusterError(
            f"cluster {c.name}: the issued kubeconfig does not load ({exc})", cluster=c.name
        ) from exc
    return client.ApiClient(configuration=cfg)


async def _as_user(c: ClusterClient, server: str, fn: Callable[..., T], *args: Any) -> T:
    """One call with the requester's kubeconfig, its failures told in the user's terms."""
    call = partial(fn, *args, _request_timeout=c.timeout)
    try:
        return await asyncio.get_running_loop().run_in_executor(c.pool, call)
    except ApiException as exc:
        err = api_error(c.name, exc)
        if exc.status == 401:
            # A fresh token can reach an apiserver replica that has not seen
            # its ServiceAccount yet: worth another try, then a clear failure.
            err = ClusterError(
                f"cluster {c.name}: {server} rejects the new token (401 Unauthorized)",
                cluster=c.name,
                transient=True,
            )
        raise err from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, urllib3.exceptions.SSLError | ssl.SSLError):
            raise ClusterError(
                f"cluster {c.name}: the kubeconfig for {server} cannot verify the API "
                f"server's TLS certificate ({_short(reason)}); the bot's kubeconfig must "
                "name the CA that signed it (certificate-authority-data or "
                "certificate-authority), or the policy's server must be one that CA covers",
                cluster=c.name,
            ) from exc
        raise ClusterError(
            f"cluster {c.name}: the kubeconfig's server {server} cannot be reached "
            f"({_short(reason)}); the policy's server must be reachable from the bot too",
            cluster=c.name,
            transient=True,
        ) from exc


def _short(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text if len(text) <= 200 else text[:197] + "..."


# -- proving access is gone (the revocation receipt) ------------------------------------------

# At most this many SubjectAccessReviews per receipt: a read and a write verb
# show the binding is gone without one review per rule of a large ClusterRole.
MAX_REVIEWS = 3
_READ_VERBS = ("get", "list", "watch")
_WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


@dataclass(frozen=True)
class Review:
    """One SubjectAccessReview question: may the grant's identity ``verb`` ``resource``?

    ``namespace`` None asks cluster-wide (a ClusterRoleBinding's reach).
    """

    verb: str
    resource: str
    group: str = ""
    namespace: str | None = None

    def __str__(self) -> str:
        what = f"{self.resource}.{self.group}" if self.group else self.resource
        where = f" -n {self.namespace}" if self.namespace else " (cluster-wide)"
        return f"{self.verb} {what}{where}"


@dataclass(frozen=True)
class GoneCheck:
    """One thing looked at on the cluster, and whether it shows the access is gone."""

    what: str  # "ServiceAccount accessbot-users/x", "SubjectAccessReview get pods -n team-a"
    gone: bool
    answer: str  # what the cluster said: "404", "still exists (uid …)", "not allowed", "allowed"

    def __str__(self) -> str:
        return f"{self.what}: {self.answer}"


def representative_reviews(rules: Sequence[Any] | None, namespace: str | None) -> list[Review]:
    """A few (verb, resource) questions derived from a ClusterRole's rules.

    ``rules``: :class:`k8s.rbac.Rule`-shaped objects (``verbs``, ``api_groups``,
    ``resources``, ``resource_names``), or None when the role could not be read.
    Picks the first rule naming a concrete read verb and the first naming a
    write verb (``*`` counts as both); a wildcard resource is asked about as
    ``pods`` of the core group. Rules limited to ``resourceNames`` are skipped
    (a review without a name would not match them). Always at least one
    question: ``get pods``, the everyday verb of nearly every role.
    """
    found: list[Review] = []
    for rule in rules or ():
        if getattr(rule, "resource_names", ()) or not rule.resources:
            continue
        groups = tuple(rule.api_groups) or ("",)
        group = "" if groups[0] == "*" else groups[0]
        resource = next((r for r in rule.resources if r != "*" and "/" not in r), None)
        if resource is None:
            if "*" not in rule.resources or group:
                continue
            resource = "pods"
        for kinds in (_READ_VERBS, _WRITE_VERBS):
            verb = next((v for v in kinds if v in rule.verbs), None)
            if verb is None and "*" in rule.verbs:
                verb = kinds[0] if kinds is _READ_VERBS else "delete"
            if verb is None or any(r.verb in kinds for r in found):
                continue
            found.append(Review(verb, resource, group, namespace))
        if len(found) >= MAX_REVIEWS:
            break
    return found[:MAX_REVIEWS] or [Review("get", "pods", "", namespace)]


async def verify_gone(
    c: ClusterClient,
    grant_id: str,
    sa_user: str,
    refs: Sequence[ObjectRef] | None,
    reviews: Sequence[Review],
) -> list[GoneCheck]:
    """Look on the cluster for what a grant made and ask whether its identity still can act.

    ``refs``: the objects recorded at activation, each read back by name and
    judged by UID (404, or a same-name object with another UID, is gone);
    None when nothing was recorded, then every object labelled with the
    grant id counts as remaining. ``sa_user``:
    ``system:serviceaccount:<ns>:<name>``, asked about in a SubjectAccessReview
    (``authorization.k8s.io/v1``, which needs ``create subjectaccessreviews``)
    per ``reviews``; only the user is named, not its groups, so the answer is
    about bindings naming this ServiceAccount, which is what the grant made.
    Returns every check; raises ClusterError when the cluster does not answer.
    """
    checks: list[GoneCheck] = []
    if refs is None:
        left = [o for o in await list_managed(c) if o.grant_id == grant_id]
        checks.append(
            GoneCheck(
                f"objects labelled {names.GRANT_ID}={grant_id}",
                not left,
                "none" if not left else ", ".join(f"{o.kind} {o.name}" for o in left),
            )
        )
    for ref in sorted(refs or (), key=lambda r: r.kind != "ServiceAccount"):
        checks.append(await _object_gone(c, ref))
    for review in reviews:
        checks.append(await _review(c, sa_user, review))
    return checks


async def _object_gone(c: ClusterClient, ref: ObjectRef) -> GoneCheck:
    call = _object_call(c, ref, "read")
    where = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    what = f"{ref.kind} {where}"
    try:
        obj = await c.call(call)
    except ClusterError as exc:
        if status_of(exc) == 404:
            return GoneCheck(what, True, "404")
        raise
    meta: Any = getattr(obj, "metadata", None)
    uid = str(meta.uid or "") if meta is not None else ""
    if ref.uid and uid != ref.uid:
        return GoneCheck(what, True, f"404 for uid {ref.uid} (a different object has the name)")
    return GoneCheck(what, False, f"still exists (uid {uid})")


async def _review(c: ClusterClient, user: str, review: Review) -> GoneCheck:
    body = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            resource_attributes=client.V1ResourceAttributes(
                verb=review.verb,
                resource=review.resource,
                group=review.group,
                namespace=review.namespace or "",
            ),
        )
    )
    answer = await c.call(c.authz.create_subject_access_review, body)
    allowed = bool(answer.status and answer.status.allowed)
    return GoneCheck(
        f"SubjectAccessReview {review}", not allowed, "allowed" if allowed else "not allowed"
    )
