"""Decoding one Helm release body: base64, base64, bounded gunzip, a few JSON fields.

Helm 3 stores a release as base64(gzip(JSON)) in its Secret's ``release``
value, and the API base64-encodes Secret data once more. Decoding follows
Go's rules (the strict StdEncoding, gzip members back to back, encoding/json's
case-insensitive keys, last duplicate winning) so a body reads as helm reads
it; a body helm could not read is :class:`~k8s.errors.CorruptRelease`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
import zlib
from typing import Any

from k8s.errors import CorruptRelease, OversizedRelease

CORRUPT = CorruptRelease.kind
OVERSIZED = OversizedRelease.kind
GZIP_MAGIC = b"\x1f\x8b\x08"
# A release body larger than this once decompressed is reported, not read:
# Secrets hold at most 1 MiB, so only a crafted gzip inflates past it, and
# reading one must not take the bot's memory with it.
MAX_RELEASE_BYTES = 16 * 1024 * 1024


def _b64(data: str | bytes) -> bytes:
    # Go's StdEncoding skips CR/LF and is otherwise strict; so are we.
    raw = data.encode() if isinstance(data, str) else data
    try:
        return base64.b64decode(raw.replace(b"\r", b"").replace(b"\n", b""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CorruptRelease(f"bad base64: {exc}") from exc


def gunzip_bounded(body: bytes, limit: int = MAX_RELEASE_BYTES) -> bytearray:
    """Decompress like Go's ``gzip.Reader`` (members back to back), to at most ``limit`` bytes.

    Output grows 1 MiB at a time and stops one byte past ``limit``, so a gzip
    bomb costs ``limit`` bytes of memory, never what it would inflate to.
    Raises :class:`OversizedRelease` past the limit, :class:`CorruptRelease` on
    bad or truncated data (Go checks each member's CRC and length; so does zlib).
    """
    out = bytearray()
    data = body
    while True:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = data
        try:
            while not member.eof:
                room = min(1 << 20, limit + 1 - len(out))
                chunk = member.decompress(pending, room)
                pending = member.unconsumed_tail
                out += chunk
                if len(out) > limit:
                    raise OversizedRelease(f"more than {limit} bytes decompressed")
                if not chunk and not pending:
                    raise CorruptRelease("bad gzip: truncated")
        except zlib.error as exc:
            raise CorruptRelease(f"bad gzip: {exc}") from exc
        data = member.unused_data
        if not data:
            return out
        if not data.startswith(GZIP_MAGIC[:2]):
            raise CorruptRelease("bad gzip: data after the last member")


# -- reading the few fields a row needs, without building the rest --------------------
#
# A release JSON is mostly manifest, templates and values. ``json.loads`` would
# build all of it: a 16 MiB body of tiny arrays becomes hundreds of MiB of
# Python objects, and one emoji makes a 16 MiB string 64 MiB. So the body is
# walked as bytes with a few regular expressions; only the fields below are
# decoded, every other value is skipped over. Keys match case-insensitively
# and the last duplicate wins, as in Go's encoding/json, which is what helm
# decodes with; a wrong type for a field we read is corrupt, as it is for helm.

_WS = re.compile(rb"[ \t\n\r]*")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_LITERAL = re.compile(rb"true|false|null")
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]|[^"\[\]{}]+', re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")
# Skipping stops (as corrupt) after this many tokens: real releases have far
# fewer, and a crafted one must not cost seconds of CPU either.
MAX_SKIP_TOKENS = 2_000_000
# A field we decode longer than this is not a name, version or message.
MAX_FIELD_BYTES = 256 * 1024

Spec = dict[str, "str | Spec"]
_METADATA: Spec = {"name": "str", "version": "str", "appversion": "str"}
_INFO: Spec = {"status": "str", "last_deployed": "str", "deleted": "str", "description": "str"}
_RELEASE: Spec = {
    "name": "str",
    "namespace": "str",
    "version": "int",
    "info": _INFO,
    "chart": {"metadata": _METADATA},
}
_SPEC_KEYS = {"appversion": "appVersion"}


class _Walker:
    def __init__(self, body: bytes | bytearray) -> None:
        self.body = body
        self.tokens = 0

    def ws(self, pos: int) -> int:
        match = _WS.match(self.body, pos)
        return match.end() if match else pos

    def expect(self, pos: int, char: bytes) -> int:
        pos = self.ws(pos)
        if self.body[pos : pos + 1] != char:
            raise CorruptRelease(f"bad JSON: expected {char.decode()} at {pos}")
        return pos + 1

    def string(self, pos: int) -> tuple[str, int]:
        match = _STRING.match(self.body, pos)
        if match is None:
            raise CorruptRelease(f"bad JSON: unterminated string at {pos}")
        if match.end() - pos > MAX_FIELD_BYTES:
            raise OversizedRelease("a field longer than 256 KiB")
        raw = bytes(match[0]).decode("utf-8", "go-replace")
        try:
            text = json.loads(raw)
        except ValueError as exc:
            raise CorruptRelease(f"bad JSON: {exc}") from exc
        # Go decodes an unpaired surrogate escape as U+FFFD.
        return _SURROGATE.sub("\ufffd", text), match.end()

    def skip(self, pos: int) -> int:
        """The position after the value starting at ``pos``."""
        pos = self.ws(pos)
        first = self.body[pos : pos + 1]
        if first not in (b"{", b"["):
            match = _STRING.match(self.body, pos) or _NUMBER.match(self.body, pos)
            match = match or _LITERAL.match(self.body, pos)
            if match is None:
                raise CorruptRelease(f"bad JSON: no value at {pos}")
            return match.end()
        depth = 0
        while True:
            match = _TOKEN.match(self.body, pos)
            if match is None:
                raise CorruptRelease("bad JSON: unterminated value")
            self.tokens += 1
            if self.tokens > MAX_SKIP_TOKENS:
                raise OversizedRelease("too many JSON values")
            token = match[0]
            if token in (b"{", b"["):
                depth += 1
            elif token in (b"}", b"]"):
                depth -= 1
                if depth == 0:
                    return match.end()
            pos = match.end()

    def value(self, pos: int, kind: str | Spec) -> tuple[Any, int]:
        pos = self.ws(pos)
        if self.body[pos : pos + 4] == b"null":
            return None, pos + 4
        if isinstance(kind, dict):
            return self.object(pos, kind)
        if kind == "str":
            if self.body[pos : pos + 1] != b'"':
                raise CorruptRelease("bad JSON: a string field holds another type")
            return self.string(pos)
        match = _NUMBER.match(self.body, pos)
        if match is None or match[1] or match[2] or match.end() - pos > 20:
            raise CorruptRelease("bad JSON: the version is not an integer")
        return int(match[0]), match.end()

    def object(self, pos: int, spec: Spec) -> tuple[dict[str, Any], int]:
        pos = self.expect(pos, b"{")
        found: dict[str, Any] = {}
        pos = self.ws(pos)
        if self.body[pos : pos + 1] == b"}":
            return found, pos + 1
        while True:
            pos = self.ws(pos)
            if self.body[pos : pos + 1] != b'"':
                raise CorruptRelease(f"bad JSON: expected a key at {pos}")
            key, pos = self.string(pos)
            pos = self.expect(pos, b":")
            folded = key.lower().replace("\u212a", "k").replace("\u017f", "s")
            kind = spec.get(folded)
            if kind is None:
                pos = self.skip(pos)
            else:
                found[_SPEC_KEYS.get(folded, folded)], pos = self.value(pos, kind)
            pos = self.ws(pos)
            nxt = self.body[pos : pos + 1]
            if nxt == b"}":
                return found, pos + 1
            if nxt != b",":
                raise CorruptRelease(f"bad JSON: expected , or }} at {pos}")
            pos += 1


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    # Go's UTF-8 decoding: each invalid byte becomes one U+FFFD.
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd", exc.start + 1


codecs.register_error("go-replace", _go_replace)


# Bodies up to this size are parsed by the C ``json`` module, which is ten
# times faster than walking; the worst a crafted 1 MiB JSON costs that way
# (hundreds of thousands of tiny containers) is about 30 MB. Larger bodies,
# rare and mostly one long manifest string, are walked.
FAST_PARSE_BYTES = 1 << 20


class _Obj(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs in document order, duplicates kept."""


class _Ambiguous(Exception):
    """Two keys of one object fold to the same field: document order decides."""


def _fold(key: str) -> str:
    return key.lower().replace("\u212a", "k").replace("\u017f", "s")


def _pairs(value: dict[str, Any] | _Obj) -> list[tuple[str, Any]]:
    if isinstance(value, _Obj):
        return value
    # A dict lost the order of repeated keys; fine unless two spell one field.
    folded = {_fold(key) for key in value}
    if len(folded) != len(value):
        raise _Ambiguous
    return list(value.items())


def _pick(value: Any, kind: str | Spec) -> Any:
    """What :meth:`_Walker.value` reads, from an already parsed value (same rules)."""
    if value is None:
        return None
    if isinstance(kind, dict):
        if not isinstance(value, dict | _Obj):
            raise CorruptRelease("bad JSON: an object field holds another type")
        found: dict[str, Any] = {}
        for key, item in _pairs(value):
            folded = _fold(key)
            sub = kind.get(folded)
            if sub is not None:
                found[_SPEC_KEYS.get(folded, folded)] = _pick(item, sub)
        return found
    if kind == "str":
        if not isinstance(value, str):
            raise CorruptRelease("bad JSON: a string field holds another type")
        if len(value) > MAX_FIELD_BYTES // 4 and len(value.encode("utf-8", "surrogatepass")) > (
            MAX_FIELD_BYTES
        ):
            raise OversizedRelease("a field longer than 256 KiB")
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise CorruptRelease("bad JSON: the version is not an integer")
    return value


def _parsed(text: str, keep_pairs: bool) -> Any:
    try:
        return json.loads(
            text,
            object_pairs_hook=_Obj if keep_pairs else None,
            parse_constant=_no_constant,
        )
    except (ValueError, RecursionError) as exc:
        raise CorruptRelease(f"bad JSON: {exc}") from exc


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Go refuses them.
    raise ValueError(f"{name} is not JSON")


def release_fields(body: bytes | bytearray) -> dict[str, Any]:
    """name, namespace, version, info and chart.metadata of a release JSON, nothing else."""
    if len(body) <= FAST_PARSE_BYTES:
        text = bytes(body).decode("utf-8", "go-replace")
        parsed = _parsed(text, keep_pairs=False)
        if not isinstance(parsed, dict):
            raise CorruptRelease("release JSON is not an object")
        try:
            release: dict[str, Any] = _pick(parsed, _RELEASE)
        except _Ambiguous:
            # Rare: parse again keeping every key in document order, as Go reads it.
            release = _pick(_parsed(text, keep_pairs=True), _RELEASE)
        return release
    walker = _Walker(body)
    pos = walker.ws(0)
    if body[pos : pos + 1] != b"{":
        raise CorruptRelease("release JSON is not an object")
    release, pos = walker.object(pos, _RELEASE)
    if walker.ws(pos) != len(body):
        raise CorruptRelease("bad JSON: data after the release")
    return release


def _release_bytes(secret_data: str) -> bytes | bytearray:
    body = _b64(_b64(secret_data))
    if len(body) > len(GZIP_MAGIC) and body.startswith(GZIP_MAGIC):
        return gunzip_bounded(body)
    return body


def decode_release_fields(secret_data: str) -> dict[str, Any]:
    """The fields of a release a row needs, from a Secret's ``data.release`` as the API returns it.

    The API base64-encodes Secret data, and Helm stored base64(gzip(JSON)), so:
    base64, base64 again, gunzip (bounded) when the gzip magic is there (Helm <
    3.0.0-beta stored plain JSON), then read the fields (:func:`release_fields`).
    Raises :class:`OversizedRelease` or :class:`CorruptRelease`.
    """
    return release_fields(_release_bytes(secret_data))


def decode_release(secret_data: str) -> dict[str, Any]:
    """The whole release JSON (bounded gunzip, then ``json.loads``): for tools and tests.

    The report never builds whole bodies (see :func:`decode_release_fields`).
    """
    try:
        release = json.loads(_release_bytes(secret_data))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptRelease(f"bad JSON: {exc}") from exc
    if not isinstance(release, dict):
        raise CorruptRelease("release JSON is not an object")
    return release
