"""Slack's Block Kit limits as the emulator enforces them: block counts, text
lengths, duplicate ids, modal rules; errors worded as Slack words them."""

from __future__ import annotations

from typing import Any

from tests.support.slack_emulator.records import JSON, VIEW_BLOCK_LIMIT


def block_errors(blocks: Any, limit: int, pointer: str = "/blocks") -> list[str]:
    """Slack-style schema errors for a block list (empty when Slack would accept it)."""
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        return [f"must be an array of objects [json-pointer:{pointer}]"]
    errors = _too_many(blocks, limit, pointer) + _duplicates(blocks, "block_id", pointer)
    for i, block in enumerate(blocks):
        errors += _block_errors(block, f"{pointer}/{i}")
    return errors


def _block_errors(block: JSON, pointer: str) -> list[str]:
    kind = block.get("type")
    errors = _too_long(block.get("block_id"), 255, f"{pointer}/block_id")
    if kind == "section":
        errors += _section_errors(block, pointer)
    elif kind == "header":
        errors += _too_long(_text(block.get("text")), 150, f"{pointer}/text/text")
    elif kind == "actions":
        elements = block.get("elements") or []
        errors += _too_many(elements, 25, f"{pointer}/elements")
        errors += _duplicates(elements, "action_id", f"{pointer}/elements")
        errors += _elements_errors(elements, f"{pointer}/elements")
    elif kind == "context":
        errors += _too_many(block.get("elements") or [], 10, f"{pointer}/elements")
    elif kind == "input":
        errors += _too_long(_text(block.get("label")), 2000, f"{pointer}/label/text")
        errors += _element_errors(block.get("element") or {}, f"{pointer}/element")
    return errors


def _section_errors(block: JSON, pointer: str) -> list[str]:
    fields = block.get("fields") or []
    if block.get("text") is None and not fields:
        return [f"must provide text or fields [json-pointer:{pointer}]"]
    errors = _too_long(_text(block.get("text")), 3000, f"{pointer}/text/text")
    errors += _too_many(fields, 10, f"{pointer}/fields")
    for i, item in enumerate(fields):
        errors += _too_long(_text(item), 2000, f"{pointer}/fields/{i}/text")
    accessory = block.get("accessory")
    if isinstance(accessory, dict):
        errors += _element_errors(accessory, f"{pointer}/accessory")
    return errors


def _elements_errors(elements: list[JSON], pointer: str) -> list[str]:
    errors: list[str] = []
    for i, element in enumerate(elements):
        errors += _element_errors(element, f"{pointer}/{i}")
    return errors


def _element_errors(element: JSON, pointer: str) -> list[str]:
    errors = _too_long(element.get("action_id"), 255, f"{pointer}/action_id")
    if element.get("type") == "button":
        errors += _too_long(_text(element.get("text")), 75, f"{pointer}/text/text")
        errors += _too_long(element.get("value"), 2000, f"{pointer}/value")
        errors += _too_long(element.get("url"), 3000, f"{pointer}/url")
    if element.get("type") == "datetimepicker":
        # Slack's rule: initial_date_time is a UNIX timestamp in seconds, an integer.
        initial = element.get("initial_date_time")
        if initial is not None and (not isinstance(initial, int) or isinstance(initial, bool)):
            errors.append(f"must be an integer [json-pointer:{pointer}/initial_date_time]")
    options = element.get("options")
    if isinstance(options, list):
        errors += _too_many(options, 100, f"{pointer}/options")
        for i, option in enumerate(options):
            errors += _too_long(_text(option.get("text")), 75, f"{pointer}/options/{i}/text/text")
            errors += _too_long(option.get("value"), 150, f"{pointer}/options/{i}/value")
    return errors


def _text(obj: Any) -> Any:
    return obj.get("text") if isinstance(obj, dict) else None


def _too_long(value: Any, limit: int, pointer: str) -> list[str]:
    if isinstance(value, str) and len(value) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{pointer}]"]
    return []


def _too_many(items: list[Any], limit: int, pointer: str) -> list[str]:
    if len(items) > limit:
        return [f"must provide an array with no more than {limit} items [json-pointer:{pointer}]"]
    return []


def _duplicates(items: list[JSON], key: str, pointer: str) -> list[str]:
    seen: set[Any] = set()
    errors: list[str] = []
    for i, item in enumerate(items):
        value = item.get(key)
        if value is not None and value in seen:
            errors.append(f"duplicate {key} {value!r} [json-pointer:{pointer}/{i}/{key}]")
        seen.add(value)
    return errors


def view_errors(view: JSON) -> list[str]:
    """Schema errors for a modal or Home tab view."""
    kind = view.get("type")
    if kind not in ("modal", "home"):
        return ["must be a valid enum value [json-pointer:/view/type]"]
    errors = block_errors(view.get("blocks", []), VIEW_BLOCK_LIMIT, "/view/blocks")
    errors += _too_long(view.get("private_metadata"), 3000, "/view/private_metadata")
    errors += _too_long(view.get("callback_id"), 255, "/view/callback_id")
    errors += _too_long(view.get("external_id"), 255, "/view/external_id")
    if kind == "modal":
        errors += _modal_errors(view)
    return errors


def _modal_errors(view: JSON) -> list[str]:
    if not isinstance(view.get("title"), dict):
        return ["missing required field: title [json-pointer:/view/title]"]
    errors: list[str] = []
    for key in ("title", "submit", "close"):
        errors += _too_long(_text(view.get(key)), 24, f"/view/{key}/text")
    blocks = view.get("blocks") or []
    has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
    if has_input and view.get("submit") is None:
        errors.append("must provide submit if input blocks are present [json-pointer:/view]")
    return errors
