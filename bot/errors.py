"""AccessBot's one error tree: what went wrong, and whose it is to fix.

::

    Exception
    ├── UserError                      the person asked for something: say why, change nothing
    │   ├── NotAllowed                 not theirs to do (authorization, offboarded)
    │   ├── Rejected                   the input breaks a rule (policy, duration, command)
    │   │   ├── RequestRejected        bot.policy: the role/cluster/namespace/duration/reason
    │   │   ├── ExtensionRejected      bot.lifecycle: beyond what the role allows
    │   │   ├── DurationError          bot.durations: not a duration we read
    │   │   └── CommandError           bot.slack.commands: a slash command written wrong
    │   └── Unknown                    names nothing we know
    │       ├── UnknownGrant
    │       └── UnknownUser
    └── Failure                        k8s.errors: not the user's doing
        ├── PermanentFailure           retrying fails the same way: end the attempt, say so
        │   ├── DeliveryFailed         bot.slack.notifier: the kubeconfig cannot reach its owner
        │   └── ConfigError/PolicyError  settings or policy unusable at start-up
        ├── TransientFailure           retrying may help: back off and try again
        │   └── MessagesDelayed        Slack did not take a change's messages now: told again later
        └── ClusterError               k8s.errors: typed by the apiserver's answer, raised
            │                          by ClusterClient.call (``status``; cause = original)
            ├── NotFound (404) ── MissingNamespaceError
            ├── Conflict (409, AlreadyExists included), Forbidden (401/403),
            │   Invalid (400/422), Refused (other 4xx), Untrusted (TLS),
            │   BadAnswer, NotManagedError, InvalidNamespace, UnknownCluster
            │                          also PermanentFailure
            └── TooManyRequests (429/425), ServerError (5xx),
                Unreachable (no answer, timeouts), NotPropagated (not visible yet)
                                       also TransientFailure
        (k8s.errors.CorruptRelease: a Helm release body; a PermanentFailure, not a ClusterError)

A use case catches :class:`PermanentFailure` to end an attempt cleanly and lets
:class:`TransientFailure` reach its retry policy; it never catches ``ValueError``
(a bug that raises one must surface as a bug, not as "grant failed").
"""

from __future__ import annotations

from k8s.errors import ClusterError, Failure, PermanentFailure, TransientFailure

__all__ = [
    "ClusterError",
    "Failure",
    "MessagesDelayed",
    "NotAllowed",
    "PermanentFailure",
    "Rejected",
    "TransientFailure",
    "Unknown",
    "UnknownGrant",
    "UnknownUser",
    "UserError",
]


class UserError(Exception):
    """The person's request cannot be done as asked; the message is for them."""


class NotAllowed(UserError, PermissionError):
    """The actor may not do this (wrong person, offboarded, not an admin)."""


class Rejected(UserError, ValueError):
    """The input breaks a rule; the message says which and what is allowed."""


class Unknown(UserError, LookupError):
    """The input names something that does not exist."""


class UnknownGrant(Unknown):
    """No grant has this id."""


class UnknownUser(Unknown):
    """No Slack user matches this email or id."""


class MessagesDelayed(TransientFailure):
    """Slack did not take some of a change's messages now (unreachable, failing, or still
    rate-limiting after the client's retries); the outbox tells the change again later."""
