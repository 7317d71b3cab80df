"""A grant's owned objects: one record type (k8s.grants.ObjectRef), stored as before.

Records written before the record type was unified must read back, and be
written again, byte for byte as they were: only kind, namespace, name and uid.
"""

from __future__ import annotations

import json

from bot.models import Grant
from k8s.grants import ObjectRef

# A record's "objects" exactly as the store held them before (ClusterObject's JSON).
STORED_OBJECTS = (
    '[{"kind":"ServiceAccount","namespace":"accessbot-users","name":"alice-abc","uid":"u-1"},'
    '{"kind":"ClusterRoleBinding","namespace":null,"name":"alice-abc","uid":"u-2"}]'
)
STORED = (
    '{"id":"abc","kind":"access","state":"active","requester":"U0ALICE","handle":"alice",'
    '"role":"view","cluster":"a","namespace":null,"scope":"cluster","cluster_role":"view",'
    '"duration_s":3600,"reason":"debug","approvals_required":0,'
    '"created_at":"2026-01-01T00:00:00Z","pending_until":"2026-01-02T00:00:00Z",'
    '"expires_at":"2026-01-01T01:00:00Z","objects":' + STORED_OBJECTS + "}"
)


def test_a_stored_record_reads_back_as_object_refs_and_writes_the_same_json() -> None:
    grant = Grant.model_validate_json(STORED)
    assert grant.objects == (
        ObjectRef("ServiceAccount", "accessbot-users", "alice-abc", "u-1"),
        ObjectRef("ClusterRoleBinding", None, "alice-abc", "u-2"),
    )
    written = json.loads(grant.model_dump_json())
    assert written["objects"] == json.loads(STORED_OBJECTS)
    again = Grant.model_validate_json(grant.model_dump_json())
    assert again.model_dump_json() == grant.model_dump_json()


def test_an_adopted_object_is_stored_without_the_attempts_detail() -> None:
    grant = Grant.model_validate_json(STORED)
    adopted = ObjectRef("RoleBinding", "team-a", "alice-abc", "u-3", created=False)
    stored = json.loads(grant.model_copy(update={"objects": (adopted,)}).model_dump_json())
    assert stored["objects"] == [
        {"kind": "RoleBinding", "namespace": "team-a", "name": "alice-abc", "uid": "u-3"}
    ]
