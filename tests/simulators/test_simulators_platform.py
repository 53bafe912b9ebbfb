"""End to end: the simulator's records go through the real worker (ingest gate,
pseudonymisation, features) into the real warehouse, and none is dead-lettered."""

from __future__ import annotations

import asyncio

import pytest

from simulators import drivers, fleet, runner, scenario, sink
from voltrisk.harness import wait_for
from voltrisk.settings import KafkaClientSettings
from warehouse.client import http_client

pytestmark = pytest.mark.integration

START_MS = 1_793_462_400_000  # 2026-11-01 00:00 Shanghai


def test_simulated_fleet_and_claims_land_in_the_warehouse(kafka_bootstrap, warehouse_proc, worker_proc):
    # a seed whose day has driving (8,930 dynamics, 7 claims); the instance starts at the
    # broker's head with its own warehouse and de-duplication store, so fixed ids are fine
    pop = drivers.build_population(4, seed=11)
    scen = scenario.Scenario(pop, fleet.FleetConfig(start_ms=START_MS, days=1, crash_scale=300.0),
                             scenario.ClaimsConfig(rings=1, ring_size=(3, 4)))
    target = sink.KafkaSink("GCJ02", settings=KafkaClientSettings(kafka_bootstrap=kafka_bootstrap))

    async def go():
        async with target:
            return await runner.pump(scen.events(), target, realtime=False, on_progress=lambda n, t: None)

    counts = asyncio.run(go())
    assert target.errors == 0
    dyn, claims_n = counts["ev.dynamics.v1"], counts["claims.fnol.v1"]
    assert dyn > 1_000 and claims_n >= 3
    # telemetry event ids start with a per-vehicle hash of (seed, start, vehicle); claim ids with the run's prefix
    vehicles = [fleet.Emitter(pop, i, scen.fcfg, fleet.initial_state(pop, i)).id_prefix for i in range(pop.n)]
    ch = http_client(warehouse_proc.url)

    def stored_dynamics() -> int:
        return ch.query("SELECT count() FROM telemetry_dynamics FINAL WHERE substring(event_id, 1, 12) IN {p:Array(String)}",
                        parameters={"p": vehicles}).result_rows[0][0]

    def stored_claims() -> int:
        return ch.query("SELECT count() FROM claims_fnol FINAL WHERE startsWith(claim_id, {p:String})",
                        parameters={"p": scen.fac.prefix}).result_rows[0][0]

    seen = [(0, 0)]

    def all_stored() -> bool:
        seen[0] = (stored_dynamics(), stored_claims())
        return seen[0] == (dyn, claims_n)

    try:
        wait_for(all_stored, 180, f"{dyn} dynamics and {claims_n} claims stored", worker_proc)
    except AssertionError as e:
        dead = ch.query("SELECT source_topic, reason, any(message), count() FROM dlq GROUP BY source_topic, reason").result_rows
        raise AssertionError(f"stored (dynamics, claims) = {seen[0]}; dead-lettered: {dead}; {e}") from None
    refused = ch.query("SELECT reason, count() FROM dlq WHERE arrayExists(p -> position(payload, p) > 0, {p:Array(String)}) "
                       "GROUP BY reason", parameters={"p": [*vehicles, scen.fac.prefix]}).result_rows
    assert refused == []
