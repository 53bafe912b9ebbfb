"""Pricing lab against a seeded model registry and the seeded warehouse."""

from __future__ import annotations

from dashboard_seed import VEHICLES, frame_with, run_page

PAGE = "views/pricing_lab.py"
HARD_BRAKE = "hard brake per 100km (30 d)"


def test_pricing_lab_registry_and_impact(seeded_url, warehouse_at, registry_root, models_at):
    warehouse_at(seeded_url)
    models_at(registry_root)
    at = run_page(PAGE)
    registry = frame_with(at, "name", "status").set_index("version")
    assert registry["status"].to_dict() == {2: "candidate", 1: "production"}
    assert registry.loc[1, "test_poisson_deviance_x100"] == 50.0 and registry.loc[2, "test_gini"] == 0.32
    m = {x.label: x.value for x in at.metric}
    assert m["Vehicles priced"] == f"{len(VEHICLES)}"
    assert float(m["Premium up > 5 %"].removesuffix(" %")) + float(m["Premium down > 5 %"].removesuffix(" %")) <= 100


def test_what_if_more_hard_braking_never_lowers_the_price(seeded_url, warehouse_at, registry_root, models_at):
    warehouse_at(seeded_url)
    models_at(registry_root)
    at = run_page(PAGE)
    base = float(at.metric[0].value.removeprefix("× "))
    [field] = [n for n in at.number_input if n.label == HARD_BRAKE]
    field.set_value(field.value * 4).run()
    raised = float(at.metric[0].value.removeprefix("× "))
    assert raised > base
    assert any("hard braking" in md.value for md in at.markdown)


def test_pricing_lab_empty_registry(seeded_url, warehouse_at, models_at, tmp_path):
    warehouse_at(seeded_url)
    models_at(tmp_path / "none")
    at = run_page(PAGE)
    assert at.info[0].value.startswith("No model is registered in")
