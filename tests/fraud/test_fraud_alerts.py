"""The live engine's alerts while one ring grows far: each alert stays small enough for
Kafka, and a ring's claims are alerted again only as it grows materially."""

from __future__ import annotations

import math
from collections import defaultdict

import msgspec
import pytest
from fraud_synth import ENTITY_COLS, T0_MS, make_book

from fraudring.engine import MAX_ALERT_MEMBERS, REALERT_GROWTH, FraudEngine
from fraudring.evaluate import train_and_evaluate
from fraudring.features import TableSpec
from stream.records import FnolV1, Party


@pytest.fixture(scope="module")
def model():
    book = make_book(seed=3, genuine=500, staged=4, phantom=2, cycles=2, opportunistic=10)
    return train_and_evaluate(book, TableSpec(tuple(ENTITY_COLS)), "is_fraud", feature_set="both").model


def _chain(start: int, n: int) -> list[FnolV1]:
    """Claims ``start`` .. ``start + n - 1`` of one chain: claims 2k and 2k+1 share a phone,
    2k-1 and 2k an address, so every entity is on two claims (far below the hub cap) and
    the chain is one ring however long it grows."""
    return [FnolV1(
        event_id=f"e{i}", ts_ms=T0_MS + i * 60_000, claim_id=f"K{i:05d}", policy_id=f"P{i}",
        loss_ts_ms=T0_MS + i * 60_000 - 3_600_000, lat=31.2304, lon=121.4737, amount_eur=5_000.0,
        parties=[Party(role="insured", name="Chain Driver", phone=f"1375{i // 2:07d}",
                       address=f"No. {(i + 1) // 2} Chain Rd, Apt 1", vehicle_id=f"V{i}")],
    ) for i in range(start, start + n)]


def test_an_alert_of_a_ring_far_larger_than_the_cap_names_the_claims_nearest_to_it(model, tmp_path):
    """Every alert named the whole ring: past ~45k claims one alert outgrew Kafka's 1 MB
    message, the send failed and the worker crash-looped."""
    engine = FraudEngine(tmp_path / "state.bin", model=model, threshold=0.0)  # every claim a candidate
    ring_size, alerts = 5 * MAX_ALERT_MEMBERS, []
    for start in range(0, ring_size, ring_size // 4):
        got = engine.process(_chain(start, ring_size // 4), {})
        assert {a["ring_claims"] for a in got} == {start + ring_size // 4}  # the true size, at each call
        alerts += got
    assert len(alerts) > ring_size  # new claims, and old ones as the ring grew
    for a in alerts:
        assert a["claim_id"] in a["members"] and len(a["members"]) == MAX_ALERT_MEMBERS, a["alert_id"]
        assert a["members"] == sorted(a["members"])
        assert len(msgspec.json.encode(a)) < 16_000, a["alert_id"]
    assert {a["ring_id"] for a in alerts} == {"ring-K00000"}
    # the nearest claims along the chain: 99 on one side, 100 on the other (a tie cut by claim id)
    middle = next(a for a in reversed(alerts) if a["claim_id"] == "K00500")
    assert middle["members"] == [f"K{i:05d}" for i in range(400, 600)]
    end = next(a for a in reversed(alerts) if a["claim_id"] == "K00000")
    assert end["members"] == [f"K{i:05d}" for i in range(MAX_ALERT_MEMBERS)]


def test_an_unsent_alert_naming_a_whole_ring_is_cut_to_the_cap_on_restart(model, tmp_path):
    """An engine from before the cap may hold an unsent alert too big to send: a restart
    alone did not help, it failed again on every start."""
    state = tmp_path / "state.bin"
    engine = FraudEngine(state, model=model, threshold=0.0)
    engine.process(_chain(0, 2 * MAX_ALERT_MEMBERS), {})
    old = engine.unsent["alert-K00007"]
    old["members"] = engine.graph.members("K00007")  # what the engine before the cap sent
    engine.save()
    again = {a["alert_id"]: a for a in FraudEngine(state, model=model).unsent_alerts()}["alert-K00007"]
    assert again["members"] == [f"K{i:05d}" for i in range(MAX_ALERT_MEMBERS)]
    assert (again["version"], again["ring_claims"]) == (old["version"], 2 * MAX_ALERT_MEMBERS)


def test_a_growing_ring_realerts_each_claim_a_logarithmic_number_of_times(model, tmp_path):
    """Every member was alerted again on every claim its ring gained: n alerts per new
    claim, each naming the ring, so O(n^2) alerts and bytes over the ring's growth."""
    state = tmp_path / "state.bin"
    engine = FraudEngine(state, model=model, threshold=0.0)
    final, step = 500, 5
    sizes: dict[str, list[int]] = defaultdict(list)  # claim -> ring size at each of its alerts
    for start in range(0, final, step):
        for a in engine.process(_chain(start, step), {}):
            sizes[a["claim_id"]].append(a["ring_claims"])
    quadratic = sum(range(step, final + 1, step))  # every member on every call: the rule before
    total = sum(map(len, sizes.values()))
    assert len(sizes) == final and total < quadratic / 5, (total, quadratic)
    assert max(map(len, sizes.values())) <= 1 + math.ceil(math.log(final / step, REALERT_GROWTH))
    for cid, seen in sizes.items():
        assert all(b >= a * REALERT_GROWTH for a, b in zip(seen, seen[1:])), cid  # only material growth
        # by the time its ring has doubled, a claim has been alerted again
        assert all(b <= 2 * a for a, b in zip(seen, seen[1:])) and 2 * seen[-1] > final, cid
    # the sizes journaled with the alerts are what a restarted engine goes on from
    restarted = FraudEngine(state, model=model, threshold=0.0)
    assert {c: k.alerted_ring_claims for c, k in restarted.known.items()} == {c: s[-1] for c, s in sizes.items()}
    assert [a["claim_id"] for a in restarted.process(_chain(final, 1), {})] == [f"K{final:05d}"]
    doubled = restarted.process(_chain(final + 1, final - 1), {})
    assert {a["claim_id"] for a in doubled} == {f"K{i:05d}" for i in range(2 * final)}
    assert {a["ring_claims"] for a in doubled} == {2 * final}
