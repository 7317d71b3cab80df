"""The grant's token: a TokenRequest covering the grant, and what the cluster made of it.

The TokenRequest API (``serviceaccounts/token``, authentication.k8s.io/v1)
mints a bound token for a ServiceAccount; deleting the ServiceAccount
invalidates it, which is how a grant ends before its token would.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from dataclasses import dataclass, field, replace

from kubernetes import client

from k8s.clients import ClusterClient
from k8s.errors import BadAnswer
from k8s.grants.objects import GrantSpec, ObjectRef

MIN_TOKEN_SECONDS = 600  # the TokenRequest API's floor
# Clock slack for a token whose lifetime cannot be read from its claims.
TOKEN_CLOCK_SKEW = dt.timedelta(seconds=5)


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


def token_seconds(expires_at: dt.datetime, now: dt.datetime) -> int:
    """Seconds the token must live to cover the grant, at least the API minimum."""
    return max(MIN_TOKEN_SECONDS, math.ceil((expires_at - now).total_seconds()))


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
        raise BadAnswer(f"cluster {c.name}: TokenRequest returned no token", cluster=c.name)
    expires: dt.datetime = status.expiration_timestamp or spec.expires_at
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=dt.UTC)
    lifetime = _jwt_lifetime(status.token)
    if lifetime is None:
        # Not a readable JWT: judge by the timestamp, allowing for clock skew.
        short = expires < spec.expires_at - TOKEN_CLOCK_SKEW
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
