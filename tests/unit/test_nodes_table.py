"""The nodes report takes its columns from the apiserver's Table, whatever its version.

tests/cluster/test_nodes_report.py checks the result byte for byte against the real
kubectl on the test apiserver; here, Tables as another version would print them.
"""

from __future__ import annotations

from typing import Any

import pytest

from k8s.errors import BadAnswer
from k8s.nodes import HEADER, report_from_table


def column(name: str, priority: int = 0) -> dict[str, Any]:
    return {"name": name, "type": "string", "format": "", "description": "", "priority": priority}


def node(name: str, ready: str = "True", unschedulable: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"unschedulable": unschedulable},
        "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady"}]},
    }


def test_columns_and_cells_are_the_apiservers() -> None:
    # An apiserver with one column fewer and one more than ours (another version).
    table = {
        "kind": "Table",
        "columnDefinitions": [
            column("Name"),
            column("Status"),
            column("Age"),
            column("Internal-IP", 1),
            column("Zone", 1),
        ],
        "rows": [
            {"cells": ["a", "Ready", "5m", "10.0.0.1", "z1"], "object": node("a")},
            {"cells": ["b", "NotReady", "7d", None, 3], "object": node("b", "False")},
        ],
    }
    report = report_from_table([table])
    assert report.header == ("NAME", "STATUS", "AGE", "INTERNAL-IP", "ZONE")
    assert report.render_table().splitlines() == [
        "NAME   STATUS     AGE   INTERNAL-IP   ZONE",
        "a      Ready      5m    10.0.0.1      z1",
        "b      NotReady   7d                  3",
    ]
    # The named fields read the cells by column name; absent columns are empty.
    a = report.rows[0]
    assert (a.name, a.status, a.age, a.internal_ip, a.version) == (
        "a",
        "Ready",
        "5m",
        "10.0.0.1",
        "",
    )
    assert (report.ready, report.total) == (1, 2)
    # Problems are judged on the Node objects the Table carried.
    assert report.problems == ("b: NotReady (KubeletReady)",)


def test_pages_are_one_table_in_the_apiservers_order() -> None:
    columns = [column(h.title()) for h in HEADER]
    first = {
        "kind": "Table",
        "columnDefinitions": columns,
        "metadata": {"continue": "next"},
        "rows": [{"cells": ["n2", "Ready", *["x"] * 8], "object": node("n2")}],
    }
    # Later pages of a Table list repeat the columns; an empty list keeps them.
    second = {
        "kind": "Table",
        "columnDefinitions": [],
        "rows": [
            {
                "cells": ["n1", "Ready,SchedulingDisabled", *["x"] * 8],
                "object": node("n1", unschedulable=True),
            }
        ],
    }
    report = report_from_table([first, second])
    assert report.header == HEADER
    assert [r.name for r in report.rows] == ["n2", "n1"]
    assert report.problems == ("n1: cordoned (SchedulingDisabled)",)
    assert report.ready == 2


def test_no_nodes_no_table() -> None:
    empty = {"kind": "Table", "columnDefinitions": [column("Name")], "rows": []}
    report = report_from_table([empty])
    assert report.render_table() == ""
    assert report.total == 0


def test_a_row_object_that_is_no_node_is_a_bad_answer() -> None:
    table = {
        "kind": "Table",
        "columnDefinitions": [column("Name")],
        "rows": [{"cells": ["a"], "object": {"metadata": "not an object"}}],
    }
    with pytest.raises(BadAnswer, match="not a Node"):
        report_from_table([table])
