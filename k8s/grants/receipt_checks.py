"""Proving access is gone: the checks behind a revocation receipt.

Each object a grant made is read back by name and judged by UID, and a
SubjectAccessReview asks whether the grant's identity can still act.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from k8s import names
from k8s.clients import ClusterClient
from k8s.errors import NotFound
from k8s.grants.objects import ObjectRef, list_managed, object_call

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
    call = object_call(c, ref, "read")
    where = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    what = f"{ref.kind} {where}"
    try:
        obj = await c.call(call)
    except NotFound:
        return GoneCheck(what, True, "404")
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
