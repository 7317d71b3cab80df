"""The one way k8s lists things: page by page, following ``continue`` tokens.

A list call with ``limit`` returns at most that many items and, when more are
left, ``metadata.continue``: passing it back returns the next page of the same
snapshot (Kubernetes API concepts, "Retrieving large results sets in chunks").
Every list call in ``k8s`` goes through :func:`pages`, so a huge cluster never
means one huge response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from k8s.clients import ClusterClient

# Items per page unless a caller says otherwise; kubectl's --chunk-size default.
DEFAULT_PAGE_SIZE = 500


def continue_token(page: Any) -> str | None:
    """The ``continue`` token of a list answer, None on the last page.

    ``page`` is a client model (``V1...List``), the list's JSON as a mapping
    (a Table included), or the token itself when the call already read it
    (a streamed list).
    """
    if page is None or isinstance(page, str):
        return page or None
    if isinstance(page, Mapping):
        meta = page.get("metadata")
        token = meta.get("continue") if isinstance(meta, Mapping) else None
        return str(token) if token else None
    meta = getattr(page, "metadata", None)
    token = getattr(meta, "_continue", None) if meta is not None else None
    return str(token) if token else None


async def pages(
    c: ClusterClient,
    list_fn: Callable[..., Any],
    *args: Any,
    page_size: int = DEFAULT_PAGE_SIZE,
    **kwargs: Any,
) -> AsyncIterator[Any]:
    """Each page of ``list_fn(*args, **kwargs)``, called through ``c.call``.

    ``page_size`` is the ``limit`` of each call (items). Raises what
    :meth:`~k8s.clients.ClusterClient.call` raises, e.g. ``Refused`` (410)
    when a continue token expired between pages.
    """
    token: str | None = None
    while True:
        page = await c.call(list_fn, *args, limit=page_size, _continue=token, **kwargs)
        yield page
        token = continue_token(page)
        if not token:
            return


async def list_all(
    c: ClusterClient,
    list_fn: Callable[..., Any],
    *args: Any,
    page_size: int = DEFAULT_PAGE_SIZE,
    **kwargs: Any,
) -> list[Any]:
    """Every item of a list call (client models), following ``continue`` page by page."""
    items: list[Any] = []
    async for page in pages(c, list_fn, *args, page_size=page_size, **kwargs):
        items.extend(page.items or [])
    return items
