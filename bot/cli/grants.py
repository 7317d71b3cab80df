"""``accessbot grants list|revoke``: the operator's view of grants, and revoking one."""

from __future__ import annotations

import argparse
from datetime import UTC

from bot.cli.runtime import core, operator, problem, stamp
from bot.errors import NotAllowed, UnknownGrant
from bot.lifecycle import LIVE, State
from bot.models import Grant
from bot.settings import Settings


async def grants(settings: Settings, args: argparse.Namespace) -> int:
    """``list`` (live and pending; ``--all``: every state) or ``revoke GRANT_ID``.

    Revoking prints the new state and, once the bot checked, whether access is
    verifiably gone; an unknown grant or a refusal is ``EXIT_PROBLEM``.
    """
    async with core(settings) as c:
        if args.grants_command == "list":
            # The operator's listing: no Slack user to authorize, so not
            # Workflow.list_grants (which asks for an admin).
            states = tuple(State) if args.all else (State.PENDING, *LIVE)
            _print_grants(await c.store.by_state(*states))
            return 0
        try:
            revocation = await c.workflow.revoke(
                args.grant_id, operator(), args.reason, operator=True
            )
        except (UnknownGrant, NotAllowed) as exc:
            return problem(str(exc))
        grant = revocation.grant
        print(f"{grant.id}: {grant.state}")
        receipt = (await c.workflow.get(grant.id)).receipt
        if receipt is not None:
            result = "verified" if receipt.verified else "NOT verified (cleanup keeps at it)"
            print(f"access gone: {result} at {stamp(receipt.at.isoformat())}")
        return 0


def _print_grants(grants: list[Grant]) -> None:
    header = ("ID", "STATE", "REQUESTER", "ROLE", "CLUSTER", "NAMESPACE", "EXPIRES")
    rows = [header] + [
        (
            g.id, str(g.state), g.requester, g.role, g.cluster, g.namespace or "-",
            g.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if g.expires_at else "-",
        )
        for g in grants
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if not grants:
        print("(none)")
