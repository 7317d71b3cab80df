"""Reading the policy file strictly, and wording every problem as ``FILE: key.path: problem``.

YAML is read with a safe loader that also refuses duplicate keys; the result is
validated against ``bot.policy_schema``; every pydantic error becomes one line
naming the key at fault, in words an operator understands (``expected a whole
number, got 'two'``, ``unknown key (did you mean 'approvals'?)``).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bot.errors import PermanentFailure
from bot.policy_checks import cross_problems
from bot.policy_schema import (
    ClusterConfig,
    Defaults,
    KeyPath,
    KeyProblems,
    Policy,
    RoleConfig,
    key_path,
)

__all__ = ["PolicyError", "load_policy", "parse_policy"]


class PolicyError(PermanentFailure, ValueError):
    """The policy file is unusable; each line of ``problems`` reads ``FILE: key.path: problem``."""

    def __init__(self, *problems: str) -> None:
        self.problems: tuple[str, ...] = problems
        super().__init__("\n".join(problems))


# --- reading ------------------------------------------------------------------------


def load_policy(path: Path, *, bot_namespace: str | None = None) -> Policy:
    """Read and validate the policy file; every problem becomes a ``PolicyError``.

    ``bot_namespace`` is the namespace the bot runs in (None outside a cluster); it
    is protected like the cluster's users' namespace.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise PolicyError(f"{source}: is a directory, not a file") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{source}: not UTF-8 text") from None
    except OSError as exc:
        raise PolicyError(f"{source}: cannot read: {exc.strerror or exc}") from None
    return parse_policy(text, source, bot_namespace=bot_namespace)


def parse_policy(
    text: str, source: str = "<policy>", *, bot_namespace: str | None = None
) -> Policy:
    """Validate policy YAML text; ``source`` names it in error messages.

    ``bot_namespace``: see ``load_policy``.
    """
    data = _load_yaml(text, source)
    if data is None:
        raise PolicyError(f"{source}: the policy is empty")
    if not isinstance(data, dict):
        raise PolicyError(
            f"{source}: expected a mapping of keys at the top level, got {_show(data)}"
        )
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(*(f"{source}: {line}" for line in _describe(exc))) from None
    if bot_namespace is not None:
        policy._bot_namespace = bot_namespace
    # Checks across keys that need the protected namespaces (the bot's own included).
    problems = [f"{source}: {key_path(path)}: {text}" for path, text in cross_problems(policy)]
    if problems:
        raise PolicyError(*problems)
    return policy


class _StrictLoader(yaml.SafeLoader):
    """Safe loader that rejects duplicate keys.

    PyYAML silently keeps the last of two equal keys, which would let a second,
    half-edited copy of a role quietly replace the first.
    """


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    first_seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *base" followed by overrides is legitimate
        key = loader.construct_object(key_node, deep=True)
        try:
            earlier = first_seen.setdefault(key, key_node.start_mark)
        except TypeError:
            continue  # unhashable key: construct_mapping reports it properly
        if earlier is not key_node.start_mark:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {earlier.line + 1})",
                key_node.start_mark,
            )
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str, source: str) -> object:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        raise PolicyError(f"{source}: {_yaml_problem(exc)}") from None
    except yaml.reader.ReaderError as exc:
        # Its str() spans two lines; a problem is reported on one.
        raise PolicyError(
            f"{source}: character {exc.position + 1}: invalid YAML: character "
            f"#x{exc.character if isinstance(exc.character, int) else ord(exc.character):04x} "
            "is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or exc.context or "invalid YAML"
    if "'@'" in problem:
        problem += ' (quote @usergroup handles: "@platform-leads")'
    if not isinstance(exc, yaml.constructor.ConstructorError):
        problem = f"YAML syntax error: {problem}"
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


# --- turning pydantic errors into "key.path: problem" lines ------------------------

_TYPE_WORDS = {
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping of keys",
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
}


def _describe(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        loc = tuple(part for part in error["loc"] if part != "[key]")
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, KeyProblems):
            lines.extend(f"{key_path(loc + path)}: {text}" for path, text in cause.items)
        else:
            lines.append(f"{key_path(loc) or '(top level)'}: {_problem_text(error, loc, cause)}")
    return lines


def _problem_text(error: Any, loc: KeyPath, cause: object) -> str:
    kind: str = error["type"]
    if isinstance(cause, Exception):
        return str(cause)
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind in _TYPE_WORDS:
        return f"{_TYPE_WORDS[kind]}, got {_show(error['input'])}"
    if kind == "too_short":
        return "needs at least one entry"
    if kind == "string_too_short":
        return "must not be empty"
    message: str = error["msg"]
    return message.replace("Input should be", "must be")


def _unknown_key(loc: KeyPath) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return "unknown key"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (allowed: {', '.join(allowed)})"


def _model_at(parent: KeyPath) -> type[BaseModel] | None:
    if not parent:
        return Policy
    if parent == ("defaults",):
        return Defaults
    if len(parent) == 2 and parent[0] == "clusters":
        return ClusterConfig
    if len(parent) == 2 and parent[0] == "roles":
        return RoleConfig
    return None


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
