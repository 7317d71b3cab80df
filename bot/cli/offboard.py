"""``accessbot offboard``: revoke everything a person holds, on every cluster, and
block them until an admin re-enables them."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from bot.cli.runtime import EXIT_PROBLEM, core, operator, problem
from bot.errors import UnknownUser
from bot.models import Grant
from bot.settings import Settings


async def offboard(settings: Settings, args: argparse.Namespace) -> int:
    """Offboard ``--email`` or ``--slack-user``, printing each grant as it ends.

    0 once every grant is verifiably gone; ``EXIT_PROBLEM`` for an unknown user or
    while objects may remain (cleanup keeps at it; running it again re-checks).
    """
    async with core(settings) as c:
        wf = c.workflow
        try:
            user = await wf.resolve_user(email=args.email, user_id=args.slack_user)
        except UnknownUser as exc:
            return problem(str(exc))
        # The preview reads the store: no use case lists a user's live grants yet.
        live = [g for g in await c.store.by_user(user) if g.live]
        clusters = sorted({g.cluster for g in live})
        print(f"offboarding {user}: {len(live)} live grants on {', '.join(clusters) or 'no'} "
              f"cluster(s)", flush=True)  # fmt: skip
        started = datetime.now(UTC)

        def progress(grant: Grant, what: str) -> None:
            print(f"  {grant.cluster}/{grant.id} ({grant.role}): {what}", flush=True)

        result = await wf.offboard(user, operator(), args.reason, progress=progress)
        if not result.done:
            for p in result.pending:
                print(f"  {p.cluster}/{p.grant}: objects may still exist", file=sys.stderr)
            print(f"accessbot: offboarding {user} is not finished; cleanup jobs keep at it, "
                  "run this again to check", file=sys.stderr)  # fmt: skip
            return EXIT_PROBLEM
        took = (datetime.now(UTC) - started).total_seconds()
        print(f"done in {took:.1f}s: revoked {len(result.revoked)}, "
              f"cancelled {len(result.cancelled)}; {user} is blocked until an admin "
              f"re-enables them")  # fmt: skip
        return 0
