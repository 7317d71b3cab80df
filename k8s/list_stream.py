"""Reading a list response ourselves: item by item off the socket, or parsed whole.

The client's model deserialisation costs far more than the HTTP transfer on
thousands of objects, and would hold them all; the report modules need only
a few fields of each. Each function here runs in the client's pool (called
through :meth:`k8s.clients.ClusterClient.call`).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import k8s.helm.decode  # noqa: F401  (registers the "go-replace" codec error handler)
from k8s.errors import BadAnswer
from k8s.paging import DEFAULT_PAGE_SIZE, pages

if TYPE_CHECKING:
    from k8s.clients import ClusterClient

# Ask the apiserver for metadata only: no Secret data crosses the wire.
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}


def read_json(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a client method and parse its body ourselves (runs in the client's pool).

    The client's model deserialisation costs far more than the HTTP transfer
    on thousands of Secrets, and we need only a few fields of each.
    """
    resp = fn(*args, _preload_content=False, **kwargs)
    try:
        parsed: dict[str, Any] = json.loads(resp.data)
        return parsed
    finally:
        resp.release_conn()


class _ListStream:
    """A list response read item by item off the socket: one item in memory at a time.

    A page of 500 whole Secrets can be 500 MiB when someone plants big ones
    (or 128 MiB of metadata with 256 KiB annotations each); parsing the page
    whole would hold all of it. The body is the apiserver's JSON list, an
    object whose ``items`` array is handed out one element at a time.
    """

    READ = 64 * 1024

    def __init__(self, resp: Any) -> None:
        self.resp = resp
        self.text = ""
        self.pos = 0
        self.eof = False
        self.utf8 = codecs.getincrementaldecoder("utf-8")("go-replace")
        self.json = json.JSONDecoder()

    def _more(self, at_least: int) -> None:
        if self.eof:
            raise ValueError("list response ended early")
        if self.pos > (1 << 20) or self.pos > len(self.text) // 2:
            self.text, self.pos = self.text[self.pos :], 0
        data = self.resp.read(max(self.READ, at_least))
        if not data:
            self.eof = True
        self.text += self.utf8.decode(data, final=not data)

    def peek(self) -> str:
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            self._more(0)

    def expect(self, chars: str) -> str:
        char = self.peek()
        if char not in chars:
            raise ValueError(f"expected one of {chars!r} in the list response")
        self.pos += 1
        return char

    def value(self) -> Any:
        """The next JSON value, reading on until it is complete (reads grow, so linear)."""
        self.peek()
        while True:
            try:
                value, end = self.json.raw_decode(self.text, self.pos)
            except ValueError:
                if self.eof:
                    raise
                self._more(len(self.text) - self.pos)
                continue
            # A number at the end of what arrived so far may go on: read on.
            if end == len(self.text) and not self.eof and isinstance(value, int | float):
                self._more(0)
                continue
            self.pos = end
            return value

    def each_item(self, handle: Callable[[dict[str, Any]], None]) -> str | None:
        """Give every item to ``handle``; returns ``metadata.continue``, if any."""
        token: str | None = None
        self.expect("{")
        if self.peek() == "}":
            return None
        while True:
            key = self.value()
            self.expect(":")
            if key == "items" and self.peek() == "[":
                self.expect("[")
                if self.peek() == "]":
                    self.pos += 1
                else:
                    while True:
                        item = self.value()
                        if isinstance(item, dict):
                            handle(item)
                        del item
                        if self.expect(",]") == "]":
                            break
            else:
                value = self.value()
                if key == "metadata" and isinstance(value, dict):
                    token = value.get("continue") or None
            if self.expect(",}") == "}":
                return token


def stream_list(
    fn: Callable[..., Any], *args: Any, handle: Callable[[dict[str, Any]], None], **kwargs: Any
) -> str | None:
    """Call a list method (in the client's pool), handing each item to ``handle``.

    Returns the continue token. The client's model deserialisation costs far
    more than the transfer on thousands of Secrets, and would hold them all.
    """
    resp = fn(*args, _preload_content=False, **kwargs)
    try:
        return _ListStream(resp).each_item(handle)
    except ValueError as exc:
        raise BadAnswer(f"malformed list response from the API server: {exc}") from exc
    finally:
        resp.release_conn()


async def each_item(
    c: ClusterClient,
    list_fn: Callable[..., Any],
    *args: Any,
    handle: Callable[[dict[str, Any]], None],
    page_size: int = DEFAULT_PAGE_SIZE,
    **kwargs: Any,
) -> None:
    """Hand every item of a list call to ``handle`` (in the pool), page after page.

    ``page_size``: items per page. Raises ``BadAnswer`` on a malformed body,
    otherwise what :meth:`~k8s.clients.ClusterClient.call` raises.
    """
    async for _ in pages(
        c, stream_list, list_fn, *args, handle=handle, page_size=page_size, **kwargs
    ):
        pass
