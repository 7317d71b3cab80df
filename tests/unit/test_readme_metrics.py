"""README's metrics table names every metric ``GET /metrics`` serves (issue 14.4)."""

from __future__ import annotations

from pathlib import Path

from bot.metrics import Metrics

README = Path(__file__).resolve().parents[2] / "README.md"


def _metrics_table() -> str:
    text = README.read_text()
    start = text.index("### Metrics (`GET /metrics`)")
    end = text.index("\n## ", start)
    return "\n".join(line for line in text[start:end].splitlines() if line.startswith("| `"))


def test_every_served_metric_has_a_row() -> None:
    table = _metrics_table()
    served = {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in Metrics().registry.collect()
    }
    assert served
    missing = sorted(name for name in served if f"| `{name}` |" not in table)
    assert not missing, f"metrics served but not in README's table: {missing}"
