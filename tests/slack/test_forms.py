"""The request, deny and extend modals: shape, limits and inline validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.durations import parse_duration
from bot.lifecycle import State
from bot.policy import AccessRequestSpec, RequestRejected, parse_policy, resolve_request
from bot.slack import ids
from bot.slack.forms import (
    RequestForm,
    deny_modal,
    extend_modal,
    extension_room,
    grant_from_metadata,
    read_request_form,
    request_modal,
    validate_extension,
    validate_request_form,
)
from tests.slack.support import POLICY, values_for_request
from tests.slack.test_blocks import HOSTILE, grant
from tests.support.slack_emulator import view_errors

POL = parse_policy(POLICY)
NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def form(**over: str | None) -> RequestForm:
    values: dict[str, str | None] = {
        "cluster": "a",
        "role": "edit",
        "namespace": "team-a",
        "duration": "2h",
        "reason": "deploying",
    }
    values.update(over)
    cluster = values["cluster"] or "a"
    return read_request_form(
        values_for_request(
            cluster=cluster,
            role=values["role"],  # type: ignore[arg-type]
            namespace=values["namespace"],
            duration=values["duration"],
            reason=values["reason"],
        )
    )


def test_request_modal_shape() -> None:
    view = request_modal(POL)
    assert view_errors(view) == []
    assert view["callback_id"] == ids.REQUEST_MODAL
    assert len(view["title"]["text"]) <= 24
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert list(blocks) == ["cluster", "role-a", "namespace", "duration", "start", "reason"]
    assert blocks["cluster"]["dispatch_action"] is True
    assert blocks["cluster"]["element"]["action_id"] == ids.MODAL_CLUSTER
    assert [o["value"] for o in blocks["role-a"]["element"]["options"]] == ["view", "edit"]
    assert blocks["duration"]["element"]["initial_value"] == "1h"
    assert blocks["reason"]["element"]["max_length"] == 500
    assert "team-*" in blocks["namespace"]["hint"]["text"]
    on_b = {
        b["block_id"]: b for b in request_modal(POL, cluster="b", role="cluster-admin")["blocks"]
    }
    select = on_b["role-b"]["element"]
    assert [o["value"] for o in select["options"]] == ["view", "cluster-admin"]
    assert select["initial_option"]["value"] == "cluster-admin"


def test_a_valid_form_becomes_a_request() -> None:
    spec, errors = validate_request_form(POL, form(), "U0ALICE")
    assert errors == {}
    assert spec is not None
    assert (spec.role, spec.cluster, spec.namespace, spec.duration) == (
        "edit",
        "a",
        "team-a",
        timedelta(hours=2),
    )
    default, _ = validate_request_form(POL, form(duration=None), "U0ALICE")
    assert default is not None
    assert default.duration is None


@pytest.mark.parametrize(
    ("over", "block", "words"),
    [
        ({"duration": "5h"}, "duration", "5h is above the 4h maximum for role edit"),
        ({"duration": "soon"}, "duration", "Use a duration like"),
        ({"namespace": None}, "namespace", "needs a namespace matching: team-*"),
        ({"namespace": "payments"}, "namespace", "Not allowed for role edit"),
        ({"namespace": "kube-system"}, "namespace", "Namespace kube-system is protected: it"),
        ({"namespace": "kube-node-lease"}, "namespace", "AccessBot never grants access there"),
        ({"namespace": "accessbot-users"}, "namespace", "holds the ServiceAccounts of every"),
        ({"namespace": "Team_A"}, "namespace", "Not a valid namespace name"),
        ({"reason": None}, "reason", "Say what you are going to do"),
        ({"reason": "x" * 501}, "reason", "Keep it to 500 characters"),
        ({"role": None}, "role-a", "Pick a role"),
        ({"cluster": "b"}, "role-b", "not available on b"),
    ],
)
def test_mistakes_are_reported_per_field(
    over: dict[str, str | None], block: str, words: str
) -> None:
    spec, errors = validate_request_form(POL, form(**over), "U0ALICE")
    assert spec is None
    assert list(errors) == [block]
    assert words in errors[block]


def test_cluster_scoped_role_takes_no_namespace() -> None:
    spec, errors = validate_request_form(
        POL, form(cluster="b", role="cluster-admin", namespace="team-a", duration="30m"), "U0ALICE"
    )
    assert spec is None
    assert "cluster-wide" in errors["namespace"]
    spec, errors = validate_request_form(
        POL, form(cluster="b", role="cluster-admin", namespace=None, duration="30m"), "U0ALICE"
    )
    assert errors == {}
    assert spec is not None
    assert spec.namespace is None


def test_deny_modal_shows_the_reason_literally() -> None:
    view = deny_modal(grant())
    assert view_errors(view) == []
    assert grant_from_metadata(view["private_metadata"]) == "abcdefgh23"
    shown = json.dumps(view)
    assert "&lt;!channel&gt;" in shown
    assert "<!channel>" not in shown
    assert HOSTILE not in shown


def test_extend_modal_and_validation() -> None:
    active = grant(State.ACTIVE)  # expires NOW + 2h; edit allows 4h from now
    assert extension_room(active, POL, NOW) == timedelta(hours=2)
    view = extend_modal(active, POL, NOW)
    assert view_errors(view) == []
    assert view["callback_id"] == ids.EXTEND_MODAL
    assert grant_from_metadata(view["private_metadata"]) == active.id
    assert validate_extension(active, POL, "1h", NOW) == (timedelta(hours=1), None)
    by, problem = validate_extension(active, POL, "3h", NOW)
    assert by is None
    assert problem is not None
    assert "extend by at most 2h" in problem
    assert validate_extension(active, POL, None, NOW)[1] is not None
    assert validate_extension(active, POL, "later", NOW)[1] is not None


def test_metadata_is_read_defensively() -> None:
    assert grant_from_metadata("") == ""
    assert grant_from_metadata("not json") == ""
    assert grant_from_metadata('{"grant": 5}') == ""


def test_every_field_at_fault_is_shown_beside_its_own_block() -> None:
    spec, errors = validate_request_form(
        POL, form(namespace="kube-system", duration="9h", reason=None), "U0ALICE"
    )
    assert spec is None
    assert set(errors) == {"namespace", "duration", "reason"}
    assert "kube-system is protected" in errors["namespace"]
    assert "above the 4h maximum" in errors["duration"]
    assert "Say what you are going to do" in errors["reason"]


def test_a_rule_added_to_the_policy_reaches_the_modal() -> None:
    # The modal holds no rules of its own: a namespace the operator protects is
    # refused beside the namespace field, in the policy's words.
    guarded = parse_policy(
        POLICY.replace("defaults:", "protected_namespaces: [team-pay*]\ndefaults:")
    )
    spec, errors = validate_request_form(guarded, form(namespace="team-payments"), "U0ALICE")
    assert spec is None
    assert errors == {
        "namespace": "Namespace team-payments is protected by the policy (team-pay*); "
        "AccessBot never grants access there."
    }
    assert validate_request_form(POL, form(namespace="team-payments"), "U0ALICE")[1] == {}


@given(
    cluster=st.sampled_from(["a", "b", None]),
    role=st.sampled_from(["view", "edit", "cluster-admin", None]),
    namespace=st.sampled_from(
        [None, "team-a", "payments", "kube-system", "Team_A", "accessbot-users"]
    ),
    duration=st.sampled_from([None, "30m", "2h", "5h", "9h", "soon"]),
    reason=st.sampled_from([None, "deploying", "x" * 501]),
)
def test_the_modal_accepts_exactly_what_the_policy_accepts(
    cluster: str | None,
    role: str | None,
    namespace: str | None,
    duration: str | None,
    reason: str | None,
) -> None:
    values = values_for_request(
        cluster=cluster or "a",
        role=role,  # type: ignore[arg-type]
        namespace=namespace,
        duration=duration,
        reason=reason,
    )
    if cluster is None:
        del values["cluster"]
    read = read_request_form(values)
    spec, errors = validate_request_form(POL, read, "U0ALICE")
    assert (spec is None) == bool(errors)
    if spec is not None:
        resolve_request(POL, spec)  # raises if the modal let through what the policy refuses
        return
    if read.cluster is None or read.role is None or duration == "soon":
        return  # the form itself is incomplete or unreadable
    typed = AccessRequestSpec(
        "U0ALICE",
        read.role,
        read.cluster,
        namespace,
        parse_duration(duration) if duration else None,
        reason or "",
    )
    with pytest.raises(RequestRejected) as refused:
        resolve_request(POL, typed)
    blocks = {
        "role": read.role_block,
        "cluster": "cluster",
        "namespace": "namespace",
        "duration": "duration",
        "reason": "reason",
    }
    assert errors == {blocks[f]: text for f, text in refused.value.problems.items()}


@pytest.mark.parametrize("field", ["cluster", "role"])
def test_a_tampered_select_is_refused_without_echoing_it(field: str) -> None:
    hostile = "<!channel> " + "x" * 3000
    spec, errors = validate_request_form(POL, form(**{field: hostile}), "U0ALICE")
    assert spec is None
    assert errors
    assert all(hostile not in text and "<!channel>" not in text for text in errors.values())
