"""The agenda's rule for scheduled access: provision at the later of approval and starts_at."""

from __future__ import annotations

import datetime as dt
import json

from bot.agenda import NextStep, StepKind
from bot.lifecycle import State
from bot.models import Grant
from tests.unit.test_agenda import MIN, T0, approved, ask

HOUR = dt.timedelta(hours=1)


def scheduled(starts_at: dt.datetime, approved_at: dt.datetime = T0 + MIN) -> Grant:
    return approved(at=approved_at).model_copy(update={"starts_at": starts_at})


def test_scheduled_grant_provisions_at_its_start_whatever_now_is() -> None:
    g = scheduled(T0 + 3 * HOUR)
    assert ask(g) == NextStep(StepKind.PROVISION, T0 + 3 * HOUR)
    assert ask(g, now=T0 + 5 * HOUR) == NextStep(StepKind.PROVISION, T0 + 3 * HOUR)


def test_approved_after_its_start_provisions_when_approved() -> None:
    g = scheduled(T0 + MIN, approved_at=T0 + HOUR)
    assert ask(g) == NextStep(StepKind.PROVISION, T0 + HOUR)


def test_provisioning_keeps_the_scheduled_due_so_the_claimed_step_is_left_alone() -> None:
    g = scheduled(T0 + 3 * HOUR)
    assert ask(g.moved(State.PROVISIONING, "accessbot", T0 + 3 * HOUR)) == ask(g)


def test_revoked_before_start_owes_only_the_cleanup_check() -> None:
    g = scheduled(T0 + 3 * HOUR).moved(State.REVOKED, "U0ALICE", T0 + 2 * MIN)
    step = ask(g, now=T0 + 2 * MIN)
    assert step is not None
    assert step.kind == StepKind.CLEANUP


def test_records_stored_before_starts_at_existed_load_as_unscheduled() -> None:
    doc = json.loads(approved().model_dump_json())
    del doc["starts_at"]
    old = Grant.model_validate_json(json.dumps(doc))
    assert old.starts_at is None
    assert ask(old) == NextStep(StepKind.PROVISION, T0 + MIN)
