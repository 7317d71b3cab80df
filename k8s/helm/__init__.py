"""Helm 3 releases, read the way ``helm ls`` shows them.

- :mod:`k8s.helm.fetch`: which release Secrets exist, newest revision first (metadata only)
- :mod:`k8s.helm.decode`: a release body, base64(gzip(JSON)), decoded within bounds
- :mod:`k8s.helm.rows`: one ``helm ls`` row per release, Go time formatting
- :mod:`k8s.helm.report`: the ``/k8s helm`` report, its problems and their order
"""

from __future__ import annotations

from k8s.errors import CorruptRelease, InvalidNamespace, OversizedRelease
from k8s.helm.decode import (
    CORRUPT,
    FAST_PARSE_BYTES,
    GZIP_MAGIC,
    MAX_FIELD_BYTES,
    MAX_RELEASE_BYTES,
    MAX_SKIP_TOKENS,
    OVERSIZED,
    decode_release,
    decode_release_fields,
    gunzip_bounded,
    release_fields,
)
from k8s.helm.fetch import (
    GET_CONCURRENCY,
    LIVE_SELECTOR,
    newest_revisions,
)
from k8s.helm.report import (
    HEADER,
    HelmReport,
    chat_order,
    check_namespace,
    helm_report,
    problem_detail,
    problem_subject,
    problem_text,
    way_out,
)
from k8s.helm.rows import (
    HELM_LS_STATES,
    KNOWN_STATES,
    MISSING,
    OWNER_SELECTOR,
    PENDING_STATES,
    SETTLED_STATES,
    ReleaseRef,
    ReleaseRow,
    corrupt_row,
    go_time_string,
    latest_refs,
    release_ref,
    release_row,
    row_from_secret,
)

__all__ = [
    "CORRUPT",
    "FAST_PARSE_BYTES",
    "GET_CONCURRENCY",
    "GZIP_MAGIC",
    "HEADER",
    "HELM_LS_STATES",
    "KNOWN_STATES",
    "LIVE_SELECTOR",
    "MAX_FIELD_BYTES",
    "MAX_RELEASE_BYTES",
    "MAX_SKIP_TOKENS",
    "MISSING",
    "OVERSIZED",
    "OWNER_SELECTOR",
    "PENDING_STATES",
    "SETTLED_STATES",
    "CorruptRelease",
    "HelmReport",
    "InvalidNamespace",
    "OversizedRelease",
    "ReleaseRef",
    "ReleaseRow",
    "chat_order",
    "check_namespace",
    "corrupt_row",
    "decode_release",
    "decode_release_fields",
    "go_time_string",
    "gunzip_bounded",
    "helm_report",
    "latest_refs",
    "newest_revisions",
    "problem_detail",
    "problem_subject",
    "problem_text",
    "release_fields",
    "release_ref",
    "release_row",
    "row_from_secret",
    "way_out",
]
