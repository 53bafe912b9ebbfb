"""The chaos runner's scenarios on a real broker, warehouse and worker: every
scenario reconciles to lost = 0 and duplicates = 0 (slow: all of them, briefly),
and one cheap scenario end to end in `make test` so the runner itself is in CI."""

from __future__ import annotations

import pytest

from voltrisk import chaos

pytestmark = pytest.mark.integration


def _checked(s: dict) -> None:
    assert not s.get("error"), s.get("error")
    assert s["produced"] > 0, s
    assert s["lost"] == 0, s["details"]
    assert s["duplicates"] == 0, s["details"]


@pytest.mark.timeout(120)
def test_poison_pill_burst_is_dead_lettered_and_nothing_is_lost(kafka_bootstrap):
    """Through the runner's API on the session broker: 9 kinds of poison among the load."""
    cfg = chaos.ChaosConfig(quick=True, scenarios=("poison_pill",), rate=300, vehicles=60, bootstrap=kafka_bootstrap)
    result = chaos.run(cfg, say=print)
    (s,) = result["scenarios"]
    _checked(s)
    poison = s["details"]["dlq_reasons"]
    # every poison record dead-lettered with its reason, and nothing else
    assert s["dead_lettered"] == 9 * 40 and s["details"]["unexpected_dead_letters"] == 0, poison
    assert {"malformed_json", "schema", "out_of_range", "non_finite", "future_ts", "missing_header", "bad_vin",
            "payload_too_large"} <= set(poison)
    assert s["accepted"] == s["stored_unique"] == s["details"]["valid_produced"]
    assert "dead-lettered 360 records" in s["voltrisk_did"]


@pytest.fixture(scope="module")
def quick_run():
    return chaos.run(chaos.ChaosConfig(quick=True), say=print)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", chaos.SCENARIOS)
def test_fault_loses_nothing_and_duplicates_nothing(quick_run, name):
    (s,) = [s for s in quick_run["scenarios"] if s["name"] == name]
    if s.get("skipped"):
        pytest.skip(s["skipped"])
    _checked(s)
    assert s["recovery_s"] is not None
    if name == "catch_up":
        assert s["details"]["drain_x_realtime"] >= 3, s["details"]  # the target
        # the features drained the backlog too, dropping none of it: a vehicle's held records
        # leave in event-time order (30 s of each vehicle still driving were skipped before)
        assert s["details"]["features_late_dropped"] == 0, s["details"]
        assert s["details"]["features_redelivered"] <= s["details"]["backlog_records"] // 100, s["details"]
