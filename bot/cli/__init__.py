"""The ``accessbot`` command line: serve, check, and operator escape hatches.

Operator commands use the same workflow code paths as Slack. A configuration
error is one line and exit code 2; ``check`` exits 1 on any problem.

This module parses the arguments and dispatches; each command lives in the module
named for it (``serve``, ``check``, ``grants``, ``audit``, ``offboard``,
``standing``), and ``runtime`` holds what they share (Redis, the core, exit codes).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bot.cli.audit import audit
from bot.cli.check import check
from bot.cli.grants import grants
from bot.cli.offboard import offboard
from bot.cli.runtime import EXIT_CONFIG, fail
from bot.cli.serve import serve
from bot.cli.standing import standing
from bot.logs import setup_logging
from bot.policy import PolicyError
from bot.redis_server import RedisUnavailable
from bot.settings import ConfigError, Settings, load_settings

__all__ = ["main"]

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]

_COMMANDS: dict[str, Command] = {
    "serve": serve,
    "check": check,
    "grants": grants,
    "offboard": offboard,
    "standing": standing,
    "audit": audit,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="accessbot", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="run the bot (HTTP mode, or Socket Mode with SLACK_APP_TOKEN)")
    sub.add_parser("check", help="validate env and policy, reach Redis and every cluster")
    grants_cmd = sub.add_parser("grants", help="list or revoke grants").add_subparsers(
        dest="grants_command", required=True, metavar="ACTION"
    )
    ls = grants_cmd.add_parser("list", help="live and pending grants")
    ls.add_argument("--all", action="store_true", help="include ended requests and grants")
    rv = grants_cmd.add_parser("revoke", help="revoke one grant now")
    rv.add_argument("grant_id")
    rv.add_argument("--reason", default="revoked by an operator")
    au = sub.add_parser("audit", help="a grant's whole life from the audit stream")
    au.add_argument("grant_id")
    off = sub.add_parser("offboard", help="revoke everything a person holds and block them")
    who = off.add_mutually_exclusive_group(required=True)
    who.add_argument("--email")
    who.add_argument("--slack-user", dest="slack_user")
    off.add_argument("--reason", default="offboarded by an operator")
    st = sub.add_parser(
        "standing", help="privileged access AccessBot did not grant (the /k8s standing report)"
    )
    st.add_argument("-c", "--cluster", help="a policy cluster (default: every cluster)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Run one command (``argv`` defaults to ``sys.argv[1:]``) and exit with its code.

    Exit codes: 0 done; 1 a problem (``check`` found one, a grant is unknown...);
    2 a configuration error (one line on stderr); 130 interrupted.
    """
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    setup_logging(settings.accessbot_log_format, settings.accessbot_log_level)
    try:
        code = asyncio.run(_COMMANDS[args.command](settings, args))
    except (ConfigError, PolicyError, RedisUnavailable) as exc:
        fail(str(exc), EXIT_CONFIG)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
