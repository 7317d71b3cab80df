"""The served OpenAPI document: valid OpenAPI 3.1, every endpoint of the contract,
and body schemas that accept exactly what the service's models accept."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from pydantic import ValidationError
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from bot.http import openapi
from bot.http.schemas import OffboardBody

CONTRACT = Path("/work/shared/CONTRACT.md")


def test_the_document_is_valid_openapi_31() -> None:
    OPENAPI_31_VALIDATOR.validate(openapi.document())


@pytest.mark.skipif(not CONTRACT.exists(), reason="the shared contract is not on this machine")
def test_every_contract_endpoint_is_described() -> None:
    http = CONTRACT.read_text().split("## HTTP", 1)[1].split("\n## ", 1)[0]
    promised = {(m.lower(), p) for m, p in re.findall(r"`(GET|POST) (/[^`\s]+)", http)}
    paths = openapi.document()["paths"]
    described = {(m, p) for p, ops in paths.items() for m in ops}
    assert promised, "no endpoints found in the contract's HTTP section"
    assert described - promised == {("get", "/openapi.json")}
    assert promised <= described


def _request_validator() -> Any:
    doc = openapi.document()
    schema = {"$ref": "#/components/schemas/OffboardBody", "components": doc["components"]}
    return jsonschema_rs.validator_for(schema)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "ada@example.com"},
        {"email": "ada@example.com", "reason": "left"},
        {"slack_user_id": "U0ALICE"},
        {"email": None, "slack_user_id": "U0ALICE"},
        {"email": "no-at-sign"},
        {"email": "two@@example.com"},
        {"email": "a b@example.com"},
        {"email": "a@" + "b" * 260},
        {"slack_user_id": "u0alice"},
        {"email": "ada@example.com", "slack_user_id": "U0ALICE"},
        {},
        {"email": "ada@example.com", "reason": "x" * 501},
        {"email": "ada@example.com", "extra": 1},
        {"email": None},
    ],
)
def test_the_request_schema_accepts_what_the_model_accepts(body: dict[str, Any]) -> None:
    try:
        OffboardBody.model_validate(body)
        accepted = True
    except ValidationError:
        accepted = False
    assert _request_validator().is_valid(body) == accepted, body
