"""Portfolio against the seeded warehouse and model registry."""

from __future__ import annotations

import pytest
from dashboard_seed import CARMAKERS, CLAIMS, DAILY_DAYS, DAILY_KM, VEHICLES, frame_with, hard_brake_per_100km, run_page

PAGE = "views/portfolio.py"
VEHICLE_YEARS = len(VEHICLES) * DAILY_DAYS / 365  # 2.4


def test_portfolio_totals_and_segments(seeded_url, warehouse_at, registry_root, models_at):
    warehouse_at(seeded_url)
    models_at(registry_root)
    at = run_page(PAGE)
    m = {x.label: x.value for x in at.metric}
    assert m["Vehicles"] == f"{len(VEHICLES)}"
    assert m["Exposure"] == f"{VEHICLE_YEARS:.2f} vehicle-years"
    assert m["Distance"] == f"{len(VEHICLES) * DAILY_DAYS * DAILY_KM:,.0f} km"
    assert m["Claims per vehicle-year"] == f"{len(CLAIMS) / VEHICLE_YEARS:.2f}"
    assert m["Crashes per vehicle-year"] == f"{1 / VEHICLE_YEARS:.2f}"  # one seeded crash (veh-00)
    seg = frame_with(at, "carmaker", "crashes_per_vehicle_year").set_index("carmaker")
    assert seg["vehicles"].to_dict() == CARMAKERS
    xpeng = [i for i, (_, maker) in enumerate(VEHICLES) if maker == "xpeng"]
    assert seg.loc["xpeng", "hard_brakes_per_100km"] == pytest.approx(sum(map(hard_brake_per_100km, xpeng)) / len(xpeng))
    assert seg.loc["byd", "crashes"] == 1
    assert "over 12 vehicles' newest features" in at.caption[-1].value


def test_portfolio_empty_warehouse(empty_url, warehouse_at):
    warehouse_at(empty_url)
    at = run_page(PAGE)
    assert at.info[0].value.startswith("No exposure yet")
