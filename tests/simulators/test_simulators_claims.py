"""Claims system: ground truth agrees with the events — ring claims are on the FNOL
stream, staged and phantom crashes leave no crash pulse, cycles close, entity
values carry realistic noise."""

from __future__ import annotations

import re

import h3
import numpy as np
import pytest

from simulators import city, claims, scenario

WINDOW_MS = scenario.IN_CELL_WINDOW_MS


def _fnol(run):
    return {e.record.claim_id: e.record for e in run.events if e.topic == "claims.fnol.v1"}


def _crashes(run):
    return [e for e in run.events if e.topic == "ev.crash.v1"]


def test_every_ring_claim_in_the_truth_is_on_the_fnol_stream(small_run):
    fnol = _fnol(small_run)
    ring_ids = [cid for ring in small_run.truth.rings for cid in ring["claim_ids"]]
    assert len(ring_ids) >= 12
    assert set(ring_ids) <= set(fnol)
    truth = {c["claim_id"]: c for c in small_run.truth.claims}
    assert set(truth) == set(fnol)
    for cid in ring_ids:
        assert truth[cid]["is_fraud"] == 1 and truth[cid]["fraud_type"] in ("staged_ring", "phantom_ring", "cycle_ring")


def test_staged_and_phantom_claims_lack_a_crash_pulse(small_run):
    crashes = _crashes(small_run)
    fraud = [c for c in small_run.truth.claims if c["fraud_type"] != "genuine"]
    checked = 0
    for c in fraud:
        if not c["insured_vehicle_id"]:
            continue
        near = [e for e in crashes if e.key == c["insured_vehicle_id"] and abs(e.ts_ms - c["loss_ts_ms"]) <= WINDOW_MS]
        assert not near, f"{c['claim_id']} ({c['fraud_type']}) has a crash pulse"
        assert c["crash_pulse_found"] in (False, None)
        checked += 1
    assert checked >= 10


def test_genuine_fleet_claims_have_their_crash_pulse(small_run):
    crashes = _crashes(small_run)
    genuine = [c for c in small_run.truth.claims if c["fraud_type"] == "genuine" and c["telematics_available"]]
    assert genuine
    for c in genuine:
        pulse = [e for e in crashes if e.key == c["insured_vehicle_id"] and abs(e.ts_ms - c["loss_ts_ms"]) <= WINDOW_MS]
        assert pulse and c["crash_pulse_found"] and c["insured_in_cell"]
        assert c["crash_delta_v_kmh"] == pulse[0].record.delta_v_kmh


def test_phantom_claims_are_where_the_vehicle_was_not(small_run):
    """Recompute 'insured_in_cell' from the raw telemetry positions of the insured VIN."""
    pos: dict[str, list[tuple[int, float, float]]] = {}
    for e in small_run.events:
        if e.topic in ("ev.dynamics.v1", "ev.state.v1"):
            pos.setdefault(e.key, []).append((e.ts_ms, e.record.lat, e.record.lon))
    phantoms = [c for c in small_run.truth.claims if c["fraud_type"] == "phantom_ring" and c["telematics_available"]]
    staged = [
        c
        for c in small_run.truth.claims
        if c["fraud_type"] in ("staged_ring", "cycle_ring") and c["telematics_available"]
    ]
    assert phantoms and staged

    def seen_in_cell(c) -> bool:
        near = {h3.str_to_int(x) for x in h3.grid_disk(h3.int_to_str(int(c["cell_h3"])), 1)}
        pts = [(la, lo) for t, la, lo in pos.get(c["insured_vehicle_id"], []) if abs(t - c["loss_ts_ms"]) <= WINDOW_MS]
        return any(city.cell_of(la, lo) in near for la, lo in pts)

    assert not any(seen_in_cell(c) for c in phantoms)
    assert all(c["insured_in_cell"] is False for c in phantoms)
    # staged collisions happen where the insured car really was, when it was driving
    driving = [c for c in staged if not c["parked_or_charging_at_loss"]]
    assert driving and all(seen_in_cell(c) for c in driving)


def test_cycles_close_and_rings_share_entities(small_run):
    truth = small_run.truth
    by_ring: dict[str, list[dict]] = {}
    for c in truth.claims:
        if c["ring_id"]:
            by_ring.setdefault(c["ring_id"], []).append(c)
    assert len(by_ring) == 3
    for ring in truth.rings:
        rows = by_ring[ring["ring_id"]]
        cycle = [
            (c["insured_vehicle_id"], c["third_party_vehicle_id"]) for c in rows if c["fraud_type"] == "cycle_ring"
        ]
        assert len(cycle) >= 3
        out = dict(cycle)
        start = cycle[0][0]
        node, steps = out[start], 1
        while node != start:
            node, steps = out[node], steps + 1
        assert steps == len(cycle)  # A->B->C->...->A
        digits = {re.sub(r"\D", "", c["insured_phone"])[-11:] for c in rows}
        assert digits & set(ring["shared_phones"])
        providers = {c["garage"] for c in rows}
        assert ring["garage"] in providers


def test_entity_values_are_noisy_but_resolvable():
    rng = np.random.default_rng(0)
    phones = {claims.noisy_phone(rng, "13800138000") for _ in range(50)}
    assert {"13800138000", "+86 138-0013-8000"} <= phones
    assert {re.sub(r"\D", "", p)[-11:] for p in phones} == {"13800138000"}
    addresses = {claims.noisy_address(rng, "No. 12 Nanjing West Road, Jing'an District, Shanghai") for _ in range(50)}
    assert len(addresses) >= 4
    names = {claims.noisy_name(rng, "Wang Xiu Ying") for _ in range(50)}
    assert {re.sub(r"\s", "", n).lower() for n in names} >= {"wangxiuying", "xiuyingwang"}


def test_claim_rows_have_exactly_the_contract_columns(small_run):
    assert list(small_run.truth.claims[0]) == list(claims.CLAIM_COLUMNS)
    fnol = _fnol(small_run)
    row = small_run.truth.claims[0]
    rec = fnol[row["claim_id"]]
    assert rec.parties[0].phone == row["insured_phone"] and rec.amount_eur == row["amount_eur"]


def test_the_fremtpl2_tables_are_read_where_voltrisk_fremtpl2_dir_says(tmp_path, monkeypatch):
    """A container has no ../shared beside the package: compose.yaml mounts the data and
    points VOLTRISK_FREMTPL2_DIR at it."""
    from simulators import drivers

    (tmp_path / "freMTPL2sev.csv").write_text("IDpol,ClaimAmount\n1,995.2\n2,1128.12\n")
    monkeypatch.setenv("VOLTRISK_FREMTPL2_DIR", str(tmp_path))
    assert claims.load_severities().tolist() == [995.2, 1128.12]
    with pytest.raises(FileNotFoundError, match="freMTPL2freq.csv.gz: .* set VOLTRISK_FREMTPL2_DIR"):
        drivers.load_policies()


def test_ring_days_puts_every_ring_claim_in_the_first_days_and_leaves_the_default_plan_alone(policies):
    """`make up` sends the first two days at once: with ``ring_days=2`` the rings' claims
    are all there, each ring's several claims linking in the entity graph; without it
    the plan is the one a seed always gave (spread over the run)."""
    from simulators import drivers, fleet

    pop = drivers.build_population(16, seed=5, policies=policies)
    cfg = fleet.FleetConfig(start_ms=1_793_462_400_000, days=30)  # 2026-11-01 00:00 Shanghai
    default = scenario.Scenario(pop, cfg, scenario.ClaimsConfig(rings=3, ring_size=(4, 6)))
    early = scenario.Scenario(pop, cfg, scenario.ClaimsConfig(rings=3, ring_size=(4, 6), ring_days=2))
    plan = lambda s: [(day, ring.ring_id, kind, a, b) for day, claims_of_day in sorted(s.ring_claims.items())  # noqa: E731
                      for ring, kind, a, b in claims_of_day]
    assert max(day for day, *_ in plan(default)) >= 2  # spread over the month
    assert {day for day, *_ in plan(early)} <= {0, 1}
    # the same rings, members and claims: only the days differ
    assert sorted(p[1:] for p in plan(early)) == sorted(p[1:] for p in plan(default))
    assert plan(scenario.Scenario(pop, cfg, scenario.ClaimsConfig(rings=3, ring_size=(4, 6)))) == plan(default)
