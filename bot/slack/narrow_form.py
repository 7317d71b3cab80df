"""The "Approve with changes" form: built from the pending request, read back, and
checked (pure) before the ack, so a mistake shows beside its field."""

from __future__ import annotations

import json
from typing import Any

from bot.durations import DurationError, format_duration, parse_duration
from bot.models import Grant
from bot.narrowing import NarrowingAsk, narrow, narrower_namespaces
from bot.policy import Policy, RequestRejected
from bot.slack import ids, text
from bot.slack.blocks import context, section
from bot.slack.forms import NOT_A_DURATION, read_text
from bot.slack.text import JSON, MODAL_TITLE_LIMIT, OPTION_TEXT_LIMIT, md, plain

__all__ = ["narrow_modal", "read_narrow_form"]


def _option(value: str) -> JSON:
    return {"text": plain(value, OPTION_TEXT_LIMIT), "value": value}


def _namespace_block(policy: Policy, grant: Grant) -> JSON:
    """A picker when there is a choice; else a line saying why there is none."""
    choices = narrower_namespaces(policy, grant)
    if len(choices) > 1:
        return {
            "type": "input",
            "block_id": ids.NAMESPACE_BLOCK,
            "label": plain("Namespace"),
            "element": {
                "type": "static_select",
                "action_id": ids.VALUE,
                "options": [_option(n) for n in choices[:100]],
                "initial_option": _option(grant.namespace or choices[0]),
            },
        }
    if grant.namespace is None:
        why = "Cluster-wide role: there is no namespace to narrow to."
    else:
        why = (
            f"Namespace {text.code(grant.namespace)}: a request names one namespace, so "
            "there is nothing narrower to pick. Deny it to have another asked for."
        )
    return context(md(why))


def narrow_modal(grant: Grant, policy: Policy) -> JSON:
    """The form an approver narrows ``grant`` in; submitting it approves."""
    asked = format_duration(grant.duration)
    label = "Extend by" if grant.kind == "extend" else "Duration"
    who, role = text.mention(grant.requester), text.escape(grant.role)
    where = text.code(grant.cluster) + (
        f" namespace {text.code(grant.namespace)}" if grant.namespace else " (cluster-wide)"
    )
    blocks: list[JSON] = [
        section(
            md(
                f"Approve {who}'s {'extension ' if grant.kind == 'extend' else ''}request for "
                f"*{role}* on {where} ({asked}) with changes. You can only narrow it: "
                "submitting counts as your approval, and the requester is told what changed."
            )
        ),
        {
            "type": "input",
            "block_id": ids.DURATION_BLOCK,
            "label": plain(label),
            "hint": plain(f"At most {asked}, as asked. Like 30m or 1h30m."),
            "element": {
                "type": "plain_text_input",
                "action_id": ids.VALUE,
                "initial_value": asked,
                "max_length": 20,
            },
        },
        _namespace_block(policy, grant),
    ]
    return {
        "type": "modal",
        "callback_id": ids.NARROW_MODAL,
        "title": plain("Approve with changes", MODAL_TITLE_LIMIT),
        "submit": plain("Approve", MODAL_TITLE_LIMIT),
        "close": plain("Cancel", MODAL_TITLE_LIMIT),
        "private_metadata": json.dumps({"grant": grant.id}, separators=(",", ":")),
        "blocks": blocks,
    }


def read_narrow_form(
    values: dict[str, Any], grant: Grant, policy: Policy
) -> tuple[NarrowingAsk | None, dict[str, str]]:
    """What the submitted form asks, or errors keyed by block id.

    Whatever the payload carries is read, including fields the form never had
    (a cluster, a role, another namespace): ``narrow`` refuses them, here and again
    in the use case.
    """
    typed = read_text(values, ids.DURATION_BLOCK)
    if typed is None:
        return None, {ids.DURATION_BLOCK: "Say how long, like 30m or 1h."}
    try:
        duration = parse_duration(typed)
    except DurationError:
        return None, {ids.DURATION_BLOCK: NOT_A_DURATION}
    role_block = next((b for b in values if b.startswith(ids.ROLE_BLOCK_PREFIX)), "")
    ask = NarrowingAsk(
        duration=duration,
        namespace=read_text(values, ids.NAMESPACE_BLOCK),
        cluster=read_text(values, ids.CLUSTER_BLOCK),
        role=read_text(values, role_block) if role_block else None,
    )
    try:
        narrow(policy, grant, ask)
    except RequestRejected as exc:
        # Shown on the one input every such form has: the others may not be on it.
        return None, {ids.DURATION_BLOCK: " ".join(exc.problems.values()) or str(exc)}
    return ask, {}
