"""Entity graph: incremental components equal a full recompute; cycles; reuse; restart."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fraudring.graph import DAY_MS, ClaimGraph, ClaimLinks, links_from_fnol, links_from_row
from stream.records import FnolV1, Party

KINDS = ["phone", "address", "bank", "vehicle", "person", "garage", "lawyer"]

claim_strategy = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 12)).map(lambda kv: (kv[0], f"v{kv[1]}")),
    min_size=0, max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(claims=st.lists(claim_strategy, min_size=1, max_size=40), hub=st.integers(2, 6))
def test_incremental_components_equal_full_recompute(claims, hub):
    g = ClaimGraph(hub_claims=hub)
    for i, ents in enumerate(claims):
        g.add(ClaimLinks(claim_id=f"c{i}", ts_ms=i * DAY_MS, entities=tuple(dict.fromkeys(ents))))
    full = g.recompute_components()
    for cid in g.claim_ids():
        members, stats = full[cid]
        assert set(g.members(cid)) == members
        comp = g.component(cid)
        got = {k: getattr(comp, k) for k in stats}
        assert got == stats
        assert g.component_id(cid) == "ring-" + min(members, key=lambda c: int(c[1:]))


def _shortest_cycle_through(edges: list[tuple[str, str]], a: str, b: str) -> int:
    """Brute force: 1 + BFS distance b -> a over all edges (0 when none)."""
    dist, frontier = {b: 0}, [b]
    while frontier:
        nxt = []
        for node in frontier:
            for u, v in edges:
                if u == node and v not in dist:
                    dist[v] = dist[node] + 1
                    nxt.append(v)
        frontier = nxt
    return dist[a] + 1 if a in dist else 0


@settings(max_examples=150, deadline=None)
@given(edges=st.lists(st.tuples(st.sampled_from("ABCDEFG"), st.sampled_from("ABCDEFG")).filter(lambda e: e[0] != e[1]),
                      min_size=1, max_size=25))
def test_incremental_cycles_equal_brute_force(edges):
    g = ClaimGraph(max_cycle_len=4)
    for i, (a, b) in enumerate(edges):
        g.add(ClaimLinks(f"c{i}", i, collisions=((a, b),)))
    for i, (a, b) in enumerate(edges):
        shortest = _shortest_cycle_through(edges, a, b)
        assert g.claim(f"c{i}").cycle_len == (shortest if shortest <= 4 else 0)
        assert g.component(f"c{i}").n_cycle_claims == int(0 < shortest <= 4)  # no shared entities: lone claims


def test_collision_cycle_marks_all_three_claims_when_it_closes():
    g = ClaimGraph()
    assert g.add(ClaimLinks("c1", 1, collisions=(("A", "B"),))) == []
    assert g.add(ClaimLinks("c2", 2, collisions=(("B", "C"),))) == []
    changed = g.add(ClaimLinks("c3", 3, collisions=(("C", "A"),)))
    assert sorted(changed) == ["c1", "c2", "c3"]
    assert [g.claim(c).cycle_len for c in ("c1", "c2", "c3")] == [3, 3, 3]
    # a 6-cycle is longer than the default search (5) and is not reported
    g2 = ClaimGraph()
    for i, (a, b) in enumerate(zip("PQRSTU", "QRSTUP")):
        assert g2.add(ClaimLinks(f"d{i}", i, collisions=((a, b),))) == []


def _fnol(cid: str, day: int, phone: str, name: str, vehicle: str, tp_vehicle: str, **kw) -> FnolV1:
    return FnolV1(
        event_id="e-" + cid, ts_ms=1_780_000_000_000 + day * DAY_MS, claim_id=cid, policy_id="p-" + cid,
        loss_ts_ms=1_780_000_000_000 + day * DAY_MS - 3_600_000, lat=31.23, lon=121.47, amount_eur=4_000.0,
        parties=[Party(role="insured", name=name, phone=phone, vehicle_id=vehicle),
                 Party(role="third_party", name="Other " + cid, vehicle_id=tp_vehicle)],
        **kw,
    )


def test_noisy_phone_formats_join_one_component_and_count_reuse_in_window():
    g = ClaimGraph()
    g.add(links_from_fnol(_fnol("c1", 0, "+86 138-0013-8000", "Zhang Wei", "VIN1", "VIN9", lawyer="Li & Co")))
    g.add(links_from_fnol(_fnol("c2", 10, "13800138000", "ZHANG  WEI", "VIN2", "VIN8", lawyer="LI & CO.")))
    g.add(links_from_fnol(_fnol("c3", 200, "0086 138 0013 8000", "zhang wei", "VIN3", "VIN7")))
    g.add(links_from_fnol(_fnol("c4", 11, "13911112222", "Wang Fang", "VIN4", "VIN6", lawyer="Li & Co")))
    assert g.members("c1") == ["c1", "c2", "c3"]
    comp = g.component("c1")
    assert (comp.n_claims, comp.n_people, comp.shared_entities) == (3, 1, 2)  # one person, one phone shared
    assert comp.pair_links == 6  # phone and person each on 3 claims: 2 x C(3,2)
    assert comp.shared_services == 1  # the lawyer, spelt two ways
    phone = next(e for e in g.claim("c2").entities if g.entity_key(e) == ("phone", "13800138000"))
    t2 = g.claim("c2").ts_ms
    assert g.reuse(phone, t2 - 90 * DAY_MS, t2) == 2
    assert g.prior(phone, t2) == 1
    assert g.members("c4") == ["c4"]


def test_state_survives_restart_and_keeps_growing():
    g = ClaimGraph()
    g.add(ClaimLinks("c1", 1, entities=(("phone", "1"),), collisions=(("A", "B"),)))
    g.add(ClaimLinks("c2", 2, entities=(("phone", "1"), ("bank", "9")), collisions=(("B", "C"),)))
    restored = ClaimGraph.from_bytes(g.to_bytes())
    assert sorted(restored.add(ClaimLinks("c3", 3, entities=(("bank", "9"),), collisions=(("C", "A"),)))) == ["c1", "c2", "c3"]
    assert restored.members("c3") == ["c1", "c2", "c3"]
    assert restored.component("c1").n_cycle_claims == 3
    assert "c1" in restored and len(restored) == 3


def test_generic_row_builds_party_person_keys_and_collision():
    row = {"insured_name": "Zhang Wei", "insured_phone": "+86 13800138000", "insured_vehicle_id": "vin-1",
           "third_party_name": "Li Na", "third_party_phone": None, "third_party_vehicle_id": "VIN 2",
           "garage": "Fast Fix"}
    links = links_from_row(row, list(row), claim_id="x", ts_ms=5)
    assert ("person", "aeghinwz|13800138000") in links.entities  # name signature | phone
    assert ("garage", "fastfix") in links.entities
    assert sum(k == "person" for k, _ in links.entities) == 1  # Li Na has only a name: no identity
    assert links.collisions == (("VIN1", "VIN2"),)
