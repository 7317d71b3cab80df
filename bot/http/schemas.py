"""The JSON bodies the HTTP endpoints read and write, as pydantic models.

These models are the one source of truth for the bodies: the offboarding webhook
parses its request with ``OffboardBody`` and renders its answers with the others,
and ``bot.http.openapi`` publishes their ``model_json_schema``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ErrorBody", "OffboardBody", "OffboardDone", "OffboardPending", "PendingGrant"]

# A time as ``k8s.grants.rfc3339`` writes it: whole seconds, UTC, ``Z``.
Rfc3339 = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


def _one_of_email_or_user(schema: dict[str, Any]) -> None:
    # What ``_exactly_one`` checks, for readers of the schema: exactly one of the
    # two is a string (a null counts as absent).
    schema["oneOf"] = [
        {"required": [field], "properties": {field: {"type": "string"}}}
        for field in ("email", "slack_user_id")
    ]


class OffboardBody(BaseModel):
    """``POST /hooks/offboard``: who leaves (exactly one of ``email`` and
    ``slack_user_id``) and why."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra=_one_of_email_or_user
    )

    # The address check is deliberately loose (one @, no blanks): Slack answers
    # whether the address exists. An explicit null is taken as absent.
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    slack_user_id: str | None = Field(None, pattern=r"^[UW][A-Z0-9]{2,20}$")
    reason: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _exactly_one(self) -> OffboardBody:
        if (self.email is None) == (self.slack_user_id is None):
            raise ValueError("give exactly one of email or slack_user_id")
        return self


class OffboardDone(BaseModel):
    """200: every grant of the user is gone on every cluster."""

    user: str = Field(description="The Slack user ID")
    revoked: list[str] = Field(description="Ids of the grants revoked")
    cancelled: list[str] = Field(description="Ids of the requests cancelled")
    verified: dict[str, Rfc3339] = Field(
        description="Per cluster the user had access on: when the bot confirmed none of "
        "the user's objects remain there (RFC 3339 UTC)."
    )


class PendingGrant(BaseModel):
    """A grant whose cluster objects may still exist."""

    grant: str
    cluster: str


class OffboardPending(BaseModel):
    """503: the user is blocked, but some grants' objects may still exist."""

    user: str = Field(description="The Slack user ID")
    pending: list[PendingGrant] = Field(
        description="Grants whose objects may still exist; retry the call."
    )


class ErrorBody(BaseModel):
    """Every refusal: one sentence saying what is wrong."""

    error: str
