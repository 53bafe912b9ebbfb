"""Risk map: res-7 cells with the k-vehicle threshold, against the seeded warehouse."""

from __future__ import annotations

from dashboard_seed import CELLS, CRASHES_IN, VISIT_DRIVING_S, VISIT_HARSH_N, VISITS_PER_VEHICLE, frame_with, run_page

PAGE = "views/risk_map.py"


def test_risk_map_hides_cells_below_k(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page(PAGE)
    cells = frame_with(at, "hex", "risk_index").set_index("hex")
    shown = {h: n for h, (_, _, n) in CELLS.items() if n >= 5}
    assert cells["vehicle_n"].to_dict() == shown
    assert "1 cells hidden because fewer than 5 vehicles drove there" in at.caption[0].value
    busiest = "87309959dffffff"
    assert cells.loc[busiest, "exposure_h"] == 8 * VISITS_PER_VEHICLE * VISIT_DRIVING_S / 3600
    assert cells.loc[busiest, "crash_n"] == CRASHES_IN[busiest]
    # every seeded visit has the same harsh rate, so crashes alone rank the cells
    assert cells["harsh_per_h"].round(6).unique().tolist() == [VISIT_HARSH_N / (VISIT_DRIVING_S / 3600)]
    assert cells.index[0] == busiest and cells.loc[busiest, "risk_index"] > 1 > cells.iloc[1]["risk_index"]
    profile = {m.label: m.value for m in at.metric}
    assert profile["Vehicles"] == "8" and profile["Crashes"] == "2" and profile["Exposure"] == "8.0 h"


def test_risk_map_k_from_settings(seeded_url, warehouse_at, monkeypatch):
    warehouse_at(seeded_url)
    monkeypatch.setenv("VOLTRISK_K_ANONYMITY_VEHICLES", "3")
    at = run_page(PAGE)
    assert len(frame_with(at, "hex", "risk_index")) == len(CELLS)
    assert "0 cells hidden because fewer than 3 vehicles" in at.caption[0].value


def test_risk_map_cell_profile_follows_selection(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page(PAGE)
    at.selectbox[2].select("873099400ffffff").run()
    assert {m.label: m.value for m in at.metric}["Vehicles"] == "5"


def test_risk_map_empty_warehouse(empty_url, warehouse_at):
    warehouse_at(empty_url)
    at = run_page(PAGE)
    assert at.info[0].value.startswith("No cell has been driven by 5 or more vehicles")
