"""Vehicle drill-down against the seeded warehouse and a seeded model registry."""

from __future__ import annotations

from dashboard_seed import (DYNAMICS_PER_VEHICLE, STATE_PER_VEHICLE, TRIP_KM, TRIPS_PER_VEHICLE, VEHICLES,
                            frame_with, run_page)

PAGE = "views/vehicle.py"


def pick(at, vehicle_id: str):
    at.text_input[0].input(vehicle_id).run()
    at.selectbox[0].select(vehicle_id).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_vehicle_numbers(seeded_url, warehouse_at, registry_root, models_at):
    warehouse_at(seeded_url)
    models_at(registry_root)
    at = pick(run_page(PAGE), "veh-11")
    m = {x.label: x.value for x in at.metric}
    assert m["Events stored"] == f"{DYNAMICS_PER_VEHICLE + STATE_PER_VEHICLE}"
    assert m["Carmaker"] == VEHICLES[11][1]
    assert m["Trips"] == f"{TRIPS_PER_VEHICLE}"
    assert m["Distance in these trips"] == f"{TRIPS_PER_VEHICLE * TRIP_KM:.1f} km"
    features = frame_with(at, "feature", "percentile").set_index("feature")
    # veh-11 brakes hardest of the 12 seeded vehicles: 100th percentile; its value is 6.0 per 100 km
    assert features.loc["hard brake per 100km (30 d)", "value"] == 6.0
    assert features.loc["hard brake per 100km (30 d)", "percentile"] == 99
    assert "fleet of 12 vehicles" in at.caption[0].value
    assert m["Multiplier (ubi-telematics@v1)"].startswith("× ")
    assert any("hard braking 6.0 per 100 km" in md.value for md in at.markdown)


def test_vehicle_least_braking_is_bottom_percentile(seeded_url, warehouse_at, registry_root, models_at):
    warehouse_at(seeded_url)
    models_at(registry_root)
    at = pick(run_page(PAGE), "veh-00")
    features = frame_with(at, "feature", "percentile").set_index("feature")
    assert features.loc["hard brake per 100km (30 d)", "percentile"] <= 9


def test_vehicle_without_registry_says_what_to_do(seeded_url, warehouse_at, models_at, tmp_path):
    warehouse_at(seeded_url)
    models_at(tmp_path / "no-models")
    at = pick(run_page(PAGE), "veh-03")
    assert any(i.value.startswith("No telematics model is in production in the registry at") for i in at.info)


def test_vehicle_hostile_id_is_bound(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page(PAGE)
    at.text_input[0].input("x' OR 1=1 --").run()
    assert not at.exception
    assert at.info[0].value == "No vehicle id starts with \"x' OR 1=1 --\"."
