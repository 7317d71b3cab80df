"""``defaults.retention``: how long Redis keeps an ended grant (and the audit stream's
age cap); validated like every policy duration."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from bot.policy import parse_policy
from tests.unit.test_policy import policy_dict, problems_of


def test_retention_defaults_to_90_days() -> None:
    assert parse_policy(yaml.safe_dump(policy_dict())).defaults.retention == timedelta(days=90)


def test_retention_is_a_policy_duration() -> None:
    data = policy_dict()
    data["defaults"]["retention"] = "30d12h"
    assert parse_policy(yaml.safe_dump(data)).defaults.retention == timedelta(days=30, hours=12)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0s", "defaults.retention: invalid duration '0s'"),
        ("soon", "defaults.retention: invalid duration 'soon'"),
        (-5, "defaults.retention: invalid duration"),
    ],
)
def test_bad_retention_names_the_key(value: object, expected: str) -> None:
    data = policy_dict()
    data["defaults"]["retention"] = value
    assert f"policy.yaml: {expected}" in problems_of(data)
