"""Pipeline health page against a seeded warehouse served by a real warehouse process."""

from __future__ import annotations

from dashboard_seed import CARMAKERS, DLQ, DYNAMICS_PER_VEHICLE, STATE_LATENCY_MS, STATE_PER_VEHICLE, VEHICLES, frame_with, run_page

PAGE = "views/pipeline.py"
EVENTS = len(VEHICLES) * (DYNAMICS_PER_VEHICLE + STATE_PER_VEHICLE)


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_pipeline_shows_fleet_counts(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page(PAGE)
    m = metrics(at)
    assert m["Vehicles"] == f"{len(VEHICLES)}"
    assert m["Events stored"] == f"{EVENTS:,}"
    assert m["Refused (DLQ)"] == f"{sum(n for *_, n in DLQ)}"
    per_topic = frame_with(at, "topic", "events_per_s").set_index("topic")
    assert per_topic.loc["ev.dynamics.v1", "event_count"] == len(VEHICLES) * DYNAMICS_PER_VEHICLE
    assert per_topic.loc["ev.state.v1", "event_count"] == len(VEHICLES) * STATE_PER_VEHICLE
    # seeded latencies: state is a constant 300 ms; dynamics cycles 200..1100 ms
    assert per_topic.loc["ev.state.v1", "latency_p50_ms"] == STATE_LATENCY_MS
    assert 600 <= per_topic.loc["ev.dynamics.v1", "latency_p50_ms"] <= 700
    assert per_topic.loc["ev.dynamics.v1", "latency_p99_ms"] >= 1000
    by_maker = frame_with(at, "carmaker", "last_event_age").set_index("carmaker")
    assert by_maker["vehicles"].to_dict() == CARMAKERS
    assert by_maker.loc["byd", "events"] == CARMAKERS["byd"] * (DYNAMICS_PER_VEHICLE + STATE_PER_VEHICLE)
    vehicles = frame_with(at, "vehicle_id")
    assert len(vehicles) == len(VEHICLES)
    assert set(vehicles["events"]) == {DYNAMICS_PER_VEHICLE + STATE_PER_VEHICLE}


def test_pipeline_dlq_by_reason_and_lag_without_kafka(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page(PAGE)
    assert [w.value for w in at.warning][0].endswith("so consumer lag is unknown; start the broker with `make up`")
    reasons = frame_with(at, "reason", "records").set_index("reason")["records"].to_dict()
    assert reasons == {reason: n for _, reason, _, n in DLQ}


def test_pipeline_vehicle_search(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page(PAGE)
    at.text_input[0].input("veh-1").run()
    found = frame_with(at, "vehicle_id")
    assert sorted(found["vehicle_id"]) == ["veh-10", "veh-11"]


def test_pipeline_hostile_search_is_bound(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page(PAGE)
    at.text_input[0].input("x' OR 1=1 --").run()
    assert not at.exception
    assert frame_with(at, "vehicle_id").empty
    assert "0 vehicles match" in [c.value for c in at.caption]


def test_pipeline_empty_warehouse(empty_url, warehouse_at):
    warehouse_at(empty_url)
    at = run_page(PAGE)
    assert [i.value for i in at.info][0].startswith("No telemetry in the warehouse yet")
    assert not at.metric


def test_pipeline_unreachable_warehouse(dead_url, warehouse_at):
    warehouse_at(dead_url)
    at = run_page(PAGE)
    assert [e.value for e in at.error] == [f"The warehouse endpoint at {dead_url} does not answer: start it with `make up`."]


def test_app_routes_to_pipeline_by_default(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page("app.py")
    assert at.title[0].value == "Pipeline health"


def test_pipeline_malformed_warehouse_url(warehouse_at):
    warehouse_at("chdb:///tmp/somewhere")
    at = run_page(PAGE)
    assert at.error[0].value.startswith("VOLTRISK_DASHBOARD_CLICKHOUSE_URL: 'chdb:///tmp/somewhere' is not a ClickHouse HTTP URL")
