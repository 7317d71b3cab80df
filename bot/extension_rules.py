"""When a grant may be extended: the role's ``max_extensions`` and ``extend_after``, pure.

Every extension path asks here (``/access extend``, the Extend button and its form,
the offer made when a request duplicates a live grant) before the room left under
``max_duration`` (:func:`bot.lifecycle.new_expiry`) is considered:

* ``max_extensions`` (default None: unlimited) counts the extensions applied to the
  grant (``Grant.extensions``); once reached, no more are asked or applied.
* ``extend_after`` (0 to 1, default 0) is the fraction of the grant that must have
  passed before an extension may be asked: the grant runs from its activation to its
  current expiry (extensions included), so with 0.5 a 1h grant may be extended from
  its 30th minute, and after an extension to 2h from its 60th.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.durations import format_duration
from bot.lifecycle import ExtensionRejected, State
from bot.models import Grant
from bot.policy import RoleConfig

__all__ = ["activated_at", "check_extension_limit", "check_extension_rules", "extendable_from"]


def activated_at(grant: Grant) -> datetime:
    """When the grant became active (its access began); its creation if never recorded."""
    steps = (s.at for s in grant.history if s.event is None and s.to_state == State.ACTIVE)
    return next(steps, grant.created_at)


def extendable_from(grant: Grant, role: RoleConfig) -> datetime:
    """The moment from which ``extend_after`` lets the grant be extended."""
    start = activated_at(grant)
    end = grant.expires_at or start
    return start + (end - start) * role.extend_after


def check_extension_limit(grant: Grant, role: RoleConfig, role_name: str) -> None:
    """Raise ExtensionRejected when ``max_extensions`` extensions were already applied."""
    limit = role.max_extensions
    if limit is not None and len(grant.extensions) >= limit:
        if limit == 0:
            raise ExtensionRejected(f"role {role_name} allows no extensions; request access again")
        raise ExtensionRejected(
            f"grant {grant.id} has had {len(grant.extensions)} extension(s), the most role "
            f"{role_name} allows (max_extensions: {limit}); request access again when it ends"
        )


def check_extension_rules(grant: Grant, role: RoleConfig, role_name: str, now: datetime) -> None:
    """Raise ExtensionRejected unless both rules let ``grant`` be extended at ``now``."""
    check_extension_limit(grant, role, role_name)
    if role.extend_after <= 0:
        return  # the default: no waiting, whatever the clocks say about the activation
    when = extendable_from(grant, role)
    if now < when:
        share = f"{role.extend_after:.0%}"
        wait = format_duration(timedelta(seconds=max(60, int((when - now).total_seconds()))))
        raise ExtensionRejected(
            f"role {role_name} allows an extension once {share} of the grant has passed: "
            f"from {when.astimezone(UTC).strftime('%H:%M UTC on %Y-%m-%d')} (in about {wait})"
        )
