"""Metrics: one registry per app instance, every series documented for operators."""

from __future__ import annotations

import re

from prometheus_client import generate_latest

from gateway.ops.metrics import Metrics
from tests.helpers import ROOT


def _names(m: Metrics) -> set[str]:
    return {family.name for family in m.registry.collect()}


def test_instances_never_share_series() -> None:
    a, b = Metrics(), Metrics()
    a.calls_total.labels("demo", "completed").inc()
    assert a.registry.get_sample_value("voicegw_calls_total", {"agent": "demo", "outcome": "completed"}) == 1
    assert b.registry.get_sample_value("voicegw_calls_total", {"agent": "demo", "outcome": "completed"}) is None
    assert b"voicegw_calls_total" in generate_latest(a.registry)


def test_every_series_is_documented_in_operations_md() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    names = _names(Metrics())
    assert len(names) > 20 and all(n.startswith("voicegw_") for n in names)
    # prometheus_client reports a counter's family name without its `_total` suffix
    missing = sorted(n for n in names if not re.search(rf"`{n}(_total)?[`{{]", doc))
    assert missing == []
