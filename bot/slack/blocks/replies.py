"""What the listeners answer a person: usage, outcomes of their commands and clicks,
refusals and failures, each as a message (or, for a modal field, a sentence)."""

from __future__ import annotations

from bot.lifecycle import State
from bot.models import Grant
from bot.slack.blocks.kit import Message, context, error_message, info_message, section
from bot.slack.blocks.schedule import kubeconfig_when
from bot.slack.commands import ACCESS_USAGE, K8S_USAGE
from bot.slack.text import JSON, code, escape, md, slack_date
from bot.workflow import Outcome, Revocation

# Sentences shown next to a modal field (Slack's ``response_action: errors``).
DATABASE_UNREACHABLE = "AccessBot cannot reach its database; try again shortly."
GRANT_GONE = "This grant no longer exists."
NOT_POSSIBLE = "Not possible."
ACCOUNT_UNCHECKED = (
    "AccessBot cannot check your account right now (its database is not "
    "answering). Nothing was changed; try again in a minute."
)


def help_message(topic: str = "access") -> Message:
    """``/access help`` or (``topic="k8s"``) ``/k8s help``."""
    usage = K8S_USAGE if topic == "k8s" else ACCESS_USAGE
    intro = (
        "Cluster reports: node status and Helm releases, problems first; "
        "standing privilege AccessBot did not grant (admins)."
        if topic == "k8s"
        else "Ask for time-limited Kubernetes access; approvers decide in the approvals "
        "channel and the kubeconfig arrives here as a file. `/access` alone opens a form."
    )
    body = "\n".join(escape(line) for line in usage.splitlines())
    durations = "Durations look like `30m`, `2h`, `1d`, `1h30m`."
    blocks = [section(md(intro)), section(md(f"```\n{body}\n```")), context(md(durations))]
    return Message(f"Usage:\n{body}", blocks)


# -- refusals and failures ---------------------------------------------------------------------


def sentence(exc: BaseException) -> str:
    """A user-facing sentence from an exception (LookupError reprs its message)."""
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    return text[:1].upper() + text[1:]


def refused(exc: BaseException) -> Message:
    """Not the person's to do (the refusal is audited by whoever raised it)."""
    return error_message(f"{sentence(exc)}. Nothing was changed.")


def our_fault() -> Message:
    """A bug of ours: the person learns it is logged, never a traceback."""
    return error_message("Something went wrong on our side; it has been logged.")


def slack_failed(code_: str) -> Message:
    """Slack failed a lookup and nothing cached could stand in."""
    return error_message(
        f"Slack did not answer a lookup AccessBot needed ({code_}); please try again in a minute."
    )


def form_not_opened() -> Message:
    """``views.open`` failed (usually a trigger older than 3 s)."""
    return error_message("Slack would not open the form; please try again.")


def unknown_cluster(name: str, known: list[str]) -> str:
    """The problem with ``-c NAME`` when the policy has no such cluster."""
    return f"unknown cluster {name!r}; clusters: {', '.join(known)}"


def refusal_view(message: Message) -> JSON:
    """A modal whose submission was refused: replaced by the refusal."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": "AccessBot"},
        "blocks": message.blocks,
    }


# -- outcomes ------------------------------------------------------------------------------------


def submitted(grant: Grant, channel: str) -> Message:
    """``/access request``: where the request waits, or that policy approved it."""
    where = f"<#{channel}>" if channel[:1] in "CG" else escape(channel)
    if grant.state == State.PENDING:
        text = (
            f"Request {code(grant.id)} is waiting for approval in {where}. I'll DM you as it moves."
        )
        if grant.starts_at is not None:
            text += f" Once approved, access starts {slack_date(grant.starts_at)}."
    else:
        text = (
            f"Request {code(grant.id)} was approved by policy; your kubeconfig will arrive in a DM."
        )
        if grant.starts_at is not None:
            text = f"Request {code(grant.id)} was approved by policy. {kubeconfig_when(grant)}"
    return Message(text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}])


def revoked(revocation: Revocation) -> Message:
    """Revoke now / Cancel request: what happened to the grant."""
    after = revocation.grant
    if revocation.already_over:
        return info_message(f"{after.id} had already ended ({revocation.was}); nothing to revoke.")
    if after.state == State.CANCELLED:
        return info_message(f"Request {after.id} is cancelled.")
    if after.state == State.REVOKED:
        return info_message(f"Grant {after.id} is revoked; its credentials no longer work.")
    return info_message(f"{after.id} ended meanwhile ({after.state}).")


def extended(grant_id: str, result: Grant) -> Message:
    """An extension: sent to the approvers (``result`` is the new request) or applied."""
    if result.id != grant_id:
        return info_message(
            f"Extension request {result.id} for grant {grant_id} went to the approvers; "
            "you will get a fresh kubeconfig when it is approved."
        )
    return info_message(f"Grant {grant_id} is extended; a fresh kubeconfig is in your DM.")


def decision_note(outcome: Outcome, grant: Grant) -> Message | None:
    """What an approver hears after Approve (None: the card says it all)."""
    if outcome == Outcome.RECORDED:
        return info_message(f"Approval recorded; {grant.tally.remaining} more needed.")
    if outcome == Outcome.ALREADY_COUNTED:
        return info_message("You had already approved this request.")
    if outcome == Outcome.ALREADY_DECIDED:
        return already_decided(grant)
    return None


def already_decided(grant: Grant) -> Message:
    """Approve or Deny on a request someone else decided meanwhile."""
    return info_message(f"This request is already {grant.state}; nothing changed.")


def denied_already(grant: Grant) -> Message:
    """The deny form submitted after the request was decided."""
    return info_message(f"Request {grant.id} was already {grant.state}; nothing changed.")


def not_pending(grant: Grant) -> Message:
    """Deny clicked on a request that is no longer pending."""
    return info_message(f"This request is already {grant.state}.")


def not_extendable(grant: Grant) -> Message:
    """Extend clicked on a grant that is not active."""
    return info_message(f"This grant is {grant.state}; only active grants extend.")


def rest_in_dm() -> Message:
    """A report longer than a response_url takes: the rest went to the DM."""
    return info_message("The rest of the report is in your DM with AccessBot.")
