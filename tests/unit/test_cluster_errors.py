"""Each HTTP status maps to one error class, raised by ClusterClient.call.

Statuses the test apiserver will not produce on demand (429, 5xx) are raised as
the client library raises them, an ``ApiException`` from the called method;
tests/cluster/test_cluster_errors.py checks the ones a real apiserver answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s.clients import ClusterClient, ClusterTrust, status_of
from k8s.errors import (
    BadAnswer,
    ClusterError,
    Conflict,
    CorruptRelease,
    Failure,
    Forbidden,
    Invalid,
    InvalidNamespace,
    MissingNamespaceError,
    NotFound,
    NotManagedError,
    PermanentFailure,
    Refused,
    ServerError,
    TooManyRequests,
    TransientFailure,
    UnknownCluster,
    Unreachable,
    is_transient,
)

EXPECTED: list[tuple[int, type[ClusterError], bool]] = [
    (400, Invalid, False),
    (401, Forbidden, False),
    (403, Forbidden, False),
    (404, NotFound, False),
    (405, Refused, False),
    (408, Unreachable, True),
    (409, Conflict, False),
    (410, Refused, False),
    (422, Invalid, False),
    (425, TooManyRequests, True),
    (429, TooManyRequests, True),
    (500, ServerError, True),
    (502, ServerError, True),
    (503, ServerError, True),
    (504, ServerError, True),
    (0, Unreachable, True),
]


@pytest.fixture
def cluster() -> Iterator[ClusterClient]:
    pool = ThreadPoolExecutor(max_workers=1)
    c = ClusterClient(
        name="prod",
        api_client=client.ApiClient(client.Configuration()),
        pool=pool,
        server="https://127.0.0.1:1",
        trust=ClusterTrust(),
    )
    yield c
    c.close()
    pool.shutdown()


def _raising(exc: BaseException) -> object:
    def method(**_: object) -> object:
        raise exc

    return method


@pytest.mark.parametrize(("status", "cls", "transient"), EXPECTED)
async def test_status_maps_to_its_class(
    cluster: ClusterClient, status: int, cls: type[ClusterError], transient: bool
) -> None:
    original = ApiException(status=status, reason="Because")
    with pytest.raises(ClusterError) as caught:
        await cluster.call(_raising(original))  # type: ignore[arg-type]
    exc = caught.value
    assert type(exc) is cls
    assert exc.__cause__ is original
    assert exc.status == status == status_of(exc)
    assert exc.cluster == "prod"
    assert exc.transient is transient is is_transient(exc)
    assert isinstance(exc, TransientFailure if transient else PermanentFailure)
    assert not isinstance(exc, PermanentFailure if transient else TransientFailure)
    assert f"API answered {status} Because" in str(exc)


@pytest.mark.parametrize(
    "original",
    [
        urllib3.exceptions.ReadTimeoutError(None, "/api", "read timed out"),  # type: ignore[arg-type]
        urllib3.exceptions.MaxRetryError(None, "/api"),  # type: ignore[arg-type]
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
    ],
)
async def test_no_answer_is_unreachable(cluster: ClusterClient, original: Exception) -> None:
    with pytest.raises(Unreachable) as caught:
        await cluster.call(_raising(original))  # type: ignore[arg-type]
    exc = caught.value
    # asyncio hands a thread's TimeoutError back as a copy (same type and args).
    assert type(exc.__cause__) is type(original)
    assert exc.__cause__.args == original.args
    assert exc.status == 0
    assert exc.transient
    assert is_transient(exc)
    assert "cannot reach the API server" in str(exc)


def test_our_own_errors_are_permanent() -> None:
    ours = (NotManagedError, MissingNamespaceError, InvalidNamespace, BadAnswer, UnknownCluster)
    for cls in ours:
        exc = cls("x", cluster="prod")
        assert isinstance(exc, PermanentFailure)
        assert isinstance(exc, ClusterError)
        assert not exc.transient
        assert not is_transient(exc)
    assert issubclass(MissingNamespaceError, NotFound)
    assert issubclass(InvalidNamespace, ValueError)
    assert issubclass(CorruptRelease, PermanentFailure)
    assert not issubclass(CorruptRelease, ClusterError)
    assert not is_transient(CorruptRelease("bad gzip"))


def test_a_bare_cluster_error_keeps_its_transient_argument() -> None:
    # Raised by callers above k8s that have no status to type it by.
    assert ClusterError("objects remain", transient=True).transient
    assert is_transient(ClusterError("objects remain", transient=True))
    assert not ClusterError("x").transient
    assert isinstance(ClusterError("x"), Failure)
