"""The live fraud agent's telemetry read on the real warehouse (chDB): a row the table
gives back just outside the contract's bounds (Float32 rounds a heading of 359.99999°
to 360.0) is read as stored, instead of failing the read (which the agent took for a
warehouse outage and retried for ever, scoring no claim after it)."""

from __future__ import annotations

import time

import msgspec
import pytest

from contracts.examples import RAW_EXAMPLES
from fraudring.lookup import WarehouseTelemetry
from stream import records as R
from stream import topics as T
from voltrisk.settings import WarehouseSettings
from warehouse.client import writer_client
from warehouse.migrate import migrate

pytestmark = pytest.mark.integration


def test_a_heading_rounded_to_360_by_the_table_is_read(tmp_path):
    ws = WarehouseSettings(clickhouse_dsn=f"chdb://{tmp_path / 'wh'}")
    client = writer_client(ws)
    migrate(client, ws)
    try:
        now = int(time.time() * 1000)
        dyn = msgspec.structs.replace(RAW_EXAMPLES[T.DYNAMICS.name].record, event_id="h-1", ts_ms=now - 60_000,
                                      heading_deg=359.99999)
        row = {**msgspec.to_builtins(dyn), "vehicle_id": "veh-h"}
        client.raw_insert("telemetry_dynamics", None, msgspec.json.encode(row), fmt="JSONEachRow")
        stored = client.query("SELECT heading_deg FROM telemetry_dynamics WHERE event_id = 'h-1'").result_rows[0][0]
        assert stored == 360.0  # what the Float32 column gives back
        claim = msgspec.structs.replace(
            RAW_EXAMPLES[T.FNOL.name].record, claim_id="c-h", loss_ts_ms=now - 60_000,
            parties=[msgspec.structs.replace(p, vehicle_id="veh-h") if p.role == "insured" else p
                     for p in RAW_EXAMPLES[T.FNOL.name].record.parties])
        recs = WarehouseTelemetry(lambda: client).records_for([claim])["c-h"]
        assert [(type(r), r.event_id, r.heading_deg) for r in recs] == [(R.DynamicsV1, "h-1", 360.0)]
    finally:
        client.close()


class _Counting:
    """The real client, counting the queries sent through it."""

    def __init__(self, client) -> None:
        self.client, self.queries = client, 0

    def query(self, *args, **kwargs):
        self.queries += 1
        return self.client.query(*args, **kwargs)


def test_a_backlog_of_claims_is_read_a_chunk_at_a_time_with_each_claims_own_window(tmp_path):
    """230 claims on 7 vehicles (windows overlapping on one vehicle, one claim without an
    insured vehicle): each claim gets exactly its vehicle's rows within ±10 min of its loss,
    computed here from what was inserted, with three queries per 100 claims (one per
    table), not three per claim (a backlog after a warehouse outage took ~14 s for 550)."""
    ws = WarehouseSettings(clickhouse_dsn=f"chdb://{tmp_path / 'wh'}")
    client = writer_client(ws)
    migrate(client, ws)
    try:
        base = int(time.time() * 1000) - 86_400_000
        kinds = (("telemetry_state", T.STATE), ("telemetry_dynamics", T.DYNAMICS), ("telemetry_crash", T.CRASH))
        stored: list[tuple[str, msgspec.Struct]] = []
        for v in range(7):
            for k, (table, spec) in enumerate(kinds):
                rows = []
                for j in range(0, 240, 3 + k):  # every 3-5 min over 12 h
                    rec = msgspec.structs.replace(RAW_EXAMPLES[spec.name].record, event_id=f"w-{v}-{k}-{j}",
                                                  ts_ms=base + j * 180_000 + k)
                    stored.append((f"veh-{v}", rec))
                    rows.append(msgspec.json.encode({**msgspec.to_builtins(rec), "vehicle_id": f"veh-{v}"}))
                client.raw_insert(table, None, b"\n".join(rows), fmt="JSONEachRow")
        example = RAW_EXAMPLES[T.FNOL.name].record

        def claim(i: int, vehicle: str | None):
            parties = [msgspec.structs.replace(p, vehicle_id=vehicle) if p.role == "insured" else p for p in example.parties]
            return msgspec.structs.replace(example, claim_id=f"c-{i}", loss_ts_ms=base + i * 190_000, parties=parties)

        claims = [claim(i, f"veh-{i % 7}") for i in range(229)] + [claim(229, None)]
        counting = _Counting(client)
        got = WarehouseTelemetry(lambda: counting).records_for(claims)

        assert counting.queries == 3 * 3  # 229 claims with a vehicle: 3 chunks of <= 100, a query per table
        assert set(got) == {c.claim_id for c in claims[:229]}
        for c in claims[:229]:
            vid = next(p.vehicle_id for p in c.parties if p.role == "insured")
            want = sorted(((r.ts_ms, r.event_id) for v, r in stored
                           if v == vid and abs(r.ts_ms - c.loss_ts_ms) <= 600_000))
            assert [(r.ts_ms, r.event_id) for r in got[c.claim_id]] == want, c.claim_id
        assert sum(map(len, got.values())) > 1000  # the windows hold rows, of all three kinds
        assert {type(r) for recs in got.values() for r in recs} == {R.StateV1, R.DynamicsV1, R.CrashV1}
    finally:
        client.close()


def _sink_insert(client, raw: str, vehicle: str, recs: list, offset: int) -> None:
    """``recs`` stored as the sink stores them (its Arrow columns, the H3 cell included)."""
    from types import SimpleNamespace

    from warehouse.sink import INSERT_SETTINGS, ROUTES

    route = ROUTES[T.clean_name(raw)]
    cols = route.columnar.new()
    for i in range(0, len(recs), 10):  # the fleet's 10-record messages
        msg = SimpleNamespace(value=msgspec.json.encode(recs[i:i + 10]), key=vehicle.encode(), partition=0,
                              offset=offset + i, headers=[])
        route.columnar.add(cols, msg, 0)
    client.insert_arrow(route.table, route.columnar.table(cols),
                        settings=dict(INSERT_SETTINGS, insert_deduplication_token=f"{raw}:{vehicle}:{offset}"))


def test_the_facts_the_warehouse_aggregates_equal_those_computed_from_the_records(tmp_path):
    """``facts_for`` (the agent's read: each claim's window aggregated in the warehouse)
    gives, claim for claim, exactly ``facts_from_telemetry`` of the window's records, on
    vehicles that drive at 10 Hz, park, charge, lose their fix, crash (pulse or only an
    impact-hard sample, near a window's edge too), several claims to a vehicle with
    overlapping windows, claims far from where the car was and claims with no telemetry,
    and rows delivered twice that no merge has collapsed yet. Where the third party's
    vehicle is ours too, whether it was in the claimed cell is read from its own window."""
    import random

    import dataclasses

    from fraudring.verify import NO_TELEMATICS, PARKED_LOOKBACK_MS, facts_from_telemetry, third_party_in_cell

    rng = random.Random(32960)
    ws = WarehouseSettings(clickhouse_dsn=f"chdb://{tmp_path / 'wh'}")
    client = writer_client(ws)
    migrate(client, ws)
    for table in ("telemetry_dynamics", "telemetry_state", "telemetry_crash"):
        client.command(f"SYSTEM STOP MERGES {table}")  # the rows delivered twice stay twice
    ex = {spec.name: RAW_EXAMPLES[spec.name].record for spec in (T.STATE, T.DYNAMICS, T.CRASH, T.FNOL)}
    base = int(time.time() * 1000) - 2 * 86_400_000
    lat0, lon0 = 48.8566, 2.3522
    claims, offset = [], 0
    try:
        for v in range(12):
            vid = f"veh-{v}"
            start = base + v * 3_600_000
            lat, lon, speed = lat0 + rng.uniform(-0.05, 0.05), lon0 + rng.uniform(-0.05, 0.05), 0.0
            dyn, states, crashes = [], [], []
            for i in range(30 * 60 * 10):  # 30 min at 10 Hz
                ts = start + i * 100
                speed = min(130.0, max(0.0, speed + rng.uniform(-3, 3.2)))
                lat, lon = lat + rng.uniform(-1e-5, 1e-5) * speed, lon + rng.uniform(-1e-5, 1e-5) * speed
                a_long = rng.gauss(0, 1.5)
                if rng.random() < 0.00008 or (v == 5 and i == 1):  # an impact, one at the very start of a window
                    a_long = rng.choice([-1, 1]) * rng.uniform(20, 40)
                no_fix = v == 7 and i % 50 == 0
                dyn.append(msgspec.structs.replace(
                    ex[T.DYNAMICS.name], event_id=f"d-{v}-{i}", ts_ms=ts, speed_kmh=round(speed, 1),
                    accel_long_mps2=round(a_long, 2), accel_lat_mps2=round(rng.gauss(0, 1), 2),
                    lat=0.0 if no_fix else lat, lon=0.0 if no_fix else lon))
                if i % 10 == 0:
                    parked_now = (i // 3000) % 2 == 1 and v % 3 == 0
                    states.append(msgspec.structs.replace(
                        ex[T.STATE.name], event_id=f"s-{v}-{i}", ts_ms=ts + (50 if v == 2 else 0),
                        speed_kmh=0.0 if parked_now else round(speed, 1), gear="P" if parked_now else "D",
                        vehicle_status=rng.choice(["started", "started", "off"]) if parked_now else "started",
                        charging_state="parked_charging" if parked_now and v == 3 else "not_charging",
                        lat=0.0 if no_fix else lat, lon=0.0 if no_fix else lon))
                if v in (1, 4) and i in (6_000, 6_600):
                    crashes.append(msgspec.structs.replace(
                        ex[T.CRASH.name], event_id=f"c-{v}-{i}", ts_ms=ts, delta_v_kmh=round(rng.uniform(5, 40), 1),
                        speed_before_kmh=round(speed, 1), lat=lat, lon=lon))
            if v % 2 == 0:  # the car switched off where it stopped: a parked state (with the last sample, or
                # 100 ms after), then nothing
                states.append(msgspec.structs.replace(states[-1], event_id=f"s-{v}-park",
                                                      ts_ms=dyn[-1].ts_ms + (0 if v % 4 == 0 else 100),
                                                      speed_kmh=0.0, gear="P", vehicle_status="off",
                                                      lat=dyn[-1].lat, lon=dyn[-1].lon))
            if v == 9:  # only a crash pulse in its window: the speed at loss is the pulse's
                dyn, states = [d for d in dyn if d.ts_ms < start + 60_000], [s for s in states if s.ts_ms < start + 60_000]
                crashes = [msgspec.structs.replace(ex[T.CRASH.name], event_id="c-9", ts_ms=start + 1_500_000,
                                                   speed_before_kmh=23.4, lat=lat, lon=lon)]
            # the other party's car, one of ours: beside this one (even vehicles) or 30 km off
            # (odd), sending a state every 10 s
            shift = 0.0 if v % 2 == 0 else 0.3
            other = [msgspec.structs.replace(st, event_id=f"o-{st.event_id}", lat=st.lat + shift if st.lat else 0.0)
                     for st in states[::10]]
            for raw, vehicle, recs in ((T.DYNAMICS.name, vid, dyn), (T.STATE.name, vid, states),
                                       (T.CRASH.name, vid, crashes), (T.STATE.name, f"other-{v}", other)):
                if recs:
                    _sink_insert(client, raw, vehicle, recs, offset)
                    offset += len(recs)
                    if v in (1, 5):  # delivered twice, each time its own insert: the table holds both till a merge
                        _sink_insert(client, raw, vehicle, recs, offset)
                        offset += len(recs)
            for j in range(6):  # losses across the drive, windows overlapping, one claimed far away, after it
                loss = start + rng.choice([0, 300, 61_250, 600_000, 900_000, 1_500_000, 1_799_900, 2_700_000]) + j
                if j >= 4:  # parked since (or not: odd vehicles' data just stops), 20 min or 4 days on
                    loss = start + (3_000_000 if j == 4 else 4 * 86_400_000)
                here = dyn[min(len(dyn) - 1, max(0, (loss - start) // 100))]
                far = j == 3
                claims.append(msgspec.structs.replace(
                    ex[T.FNOL.name], claim_id=f"claim-{v}-{j}", loss_ts_ms=loss,
                    lat=here.lat + (0.4 if far else rng.uniform(-0.004, 0.004)) if here.lat else lat0,
                    lon=here.lon + (0.4 if far else rng.uniform(-0.004, 0.004)) if here.lon else lon0,
                    parties=[msgspec.structs.replace(p, vehicle_id=vid if p.role == "insured" else
                                                     f"other-{v}" if j in (0, 1) else p.vehicle_id)
                             for p in ex[T.FNOL.name].parties]))
        claims.append(msgspec.structs.replace(claims[0], claim_id="claim-nobody", parties=[
            msgspec.structs.replace(p, vehicle_id="veh-unknown") if p.role == "insured" else p for p in claims[0].parties]))
        # no insured vehicle named, the third party's known: only what that one says
        claims.append(msgspec.structs.replace(claims[1], claim_id="claim-third-only", parties=[
            msgspec.structs.replace(p, vehicle_id=None) if p.role == "insured" else p for p in claims[1].parties]))

        for table in ("telemetry_dynamics", "telemetry_state", "telemetry_crash"):
            twice, once = client.query(f"SELECT (SELECT count() FROM {table}), (SELECT count() FROM {table} FINAL)").result_rows[0]
            assert twice > once
        reader = WarehouseTelemetry(lambda: client)
        records = reader.records_for(claims, before_ms=PARKED_LOOKBACK_MS)
        others = reader.records_for(claims, "third_party", before_ms=PARKED_LOOKBACK_MS)
        want = {c.claim_id: facts_from_telemetry(c.loss_ts_ms, c.lat, c.lon, records[c.claim_id])
                for c in claims if c.claim_id in records}
        for c in claims:
            tp = third_party_in_cell(c.loss_ts_ms, c.lat, c.lon, others.get(c.claim_id, []))
            if tp is not None:
                want[c.claim_id] = dataclasses.replace(want.get(c.claim_id, NO_TELEMATICS), third_party_in_cell=tp)
        counting = _Counting(client)
        got = WarehouseTelemetry(lambda: counting).facts_for(claims)

        assert got == want
        # 74 claims (100 a chunk) and their 147 windows (the insured's and the third party's): a query per table,
        # one around impacts if any, two for the last records before the empty windows
        assert 5 <= counting.queries <= 6
        facts = list(want.values())
        assert want["claim-third-only"].third_party_in_cell is not None and not want["claim-third-only"].telematics_available
        assert {f.third_party_in_cell for f in facts} == {None, True, False}
        parked_after = [want[f"claim-{v}-4"] for v in range(0, 12, 2)]  # the loss 20 min after the car was switched off
        assert all(f.telematics_available and f.parked_or_charging_at_loss and f.speed_at_loss_kmh == 0.0
                   for f in parked_after)
        assert all(want[f"claim-{v}-4"] == NO_TELEMATICS for v in (1, 3, 5, 11))  # last seen driving: a gap, not parked
        assert all(want[f"claim-{v}-5"] == NO_TELEMATICS for v in range(12))  # parked longer than the look-back
        # the cases are there: no telemetry, pulses, impacts without a pulse, parked, far, stationary
        assert facts.count(NO_TELEMATICS) >= 2
        assert any(f.crash_pulse_found for f in facts) and any(f.parked_or_charging_at_loss for f in facts)
        assert any(f.insured_in_cell for f in facts) and any(f.telematics_available and not f.insured_in_cell for f in facts)
        impacts = [c for c in claims if want[c.claim_id].crash_pulse_found and not any(
            isinstance(r, R.CrashV1) for r in records[c.claim_id])]
        assert len(impacts) >= 2
        assert sum(map(len, records.values())) > 100_000
    finally:
        client.close()



def test_a_claim_whose_raw_positions_expired_is_judged_on_the_cells_they_were_in(tmp_path):
    """Raw positions expire after ``raw_position_ttl_days`` (the table then gives 0, 0)
    while each row's H3 cell stays. A claim whose loss is older than that (reported
    late, or read again) is judged on the cells: in the claimed cell, and a nearest
    distance from the cells' centres, both reads alike. Before, every such row was
    12,956 km away (at 0° N 0° E) and the vehicle not in the cell: evidence against an
    honest claim."""
    from fraudring.verify import facts_from_telemetry, judge
    from stream.features.cells import cell_centre, cell_of

    ws = WarehouseSettings(clickhouse_dsn=f"chdb://{tmp_path / 'wh'}", raw_position_ttl_days=30)
    client = writer_client(ws)
    migrate(client, ws)
    try:
        loss = int(time.time() * 1000) - 40 * 86_400_000
        lat, lon = 48.8566, 2.3522
        dyn = [msgspec.structs.replace(RAW_EXAMPLES[T.DYNAMICS.name].record, event_id=f"old-d-{i}", ts_ms=loss + i * 100,
                                       lat=lat + i * 1e-5, lon=lon, speed_kmh=30.0) for i in range(-3000, 3000, 7)]
        states = [msgspec.structs.replace(RAW_EXAMPLES[T.STATE.name].record, event_id=f"old-s-{i}", ts_ms=loss + i * 1000,
                                          lat=lat + i * 1e-4, lon=lon) for i in range(-300, 300, 3)]
        _sink_insert(client, T.DYNAMICS.name, "veh-old", dyn, 0)
        _sink_insert(client, T.STATE.name, "veh-old", states, 10_000)
        stored = client.query("SELECT min(lat), max(lat), min(h3_r8) FROM telemetry_dynamics").result_rows[0]
        assert stored[:2] == (0.0, 0.0) and stored[2] != 0  # positions expired, cells kept
        example = RAW_EXAMPLES[T.FNOL.name].record
        claim = msgspec.structs.replace(example, claim_id="c-old", loss_ts_ms=loss, lat=lat, lon=lon, amount_eur=800.0,
                                        parties=[msgspec.structs.replace(p, vehicle_id="veh-old") if p.role == "insured"
                                                 else p for p in example.parties])
        reader = WarehouseTelemetry(lambda: client)
        records = reader.records_for([claim])["c-old"]
        assert {(r.lat, r.lon) for r in records} <= {cell_centre(cell_of(x.lat, x.lon)) for x in dyn + states}
        want = facts_from_telemetry(loss, lat, lon, records)
        assert reader.facts_for([claim]) == {"c-old": want}
        assert want.insured_in_cell and want.nearest_km < 0.5
        assert judge(want, claim.amount_eur).verdict == "consistent"
    finally:
        client.close()


def test_a_full_chunk_of_claims_is_judged_through_the_read_only_endpoint(tmp_path):
    """The worker reads through the read-only endpoint (its own process), which takes at
    most 1,000 form fields: a chunk of 100 claims naming both parties (200 windows) is
    judged there as on the store itself. With every number of a window a parameter, the
    query had 2,000 fields and the endpoint refused it (413), which the agent would have
    retried for ever."""
    import os
    import subprocess
    import sys

    from voltrisk.harness import free_port, http_ok, wait_for
    from warehouse.client import http_client

    dsn = f"chdb://{tmp_path / 'wh'}"
    ws = WarehouseSettings(clickhouse_dsn=dsn)
    client = writer_client(ws)
    migrate(client, ws)
    base = int(time.time() * 1000) - 86_400_000
    ex = RAW_EXAMPLES[T.DYNAMICS.name].record
    for v in range(20):
        _sink_insert(client, T.DYNAMICS.name, f"veh-{v}", [
            msgspec.structs.replace(ex, event_id=f"e-{v}-{i}", ts_ms=base + i * 1_000, lat=31.2 + v * 0.01 + i * 1e-5)
            for i in range(3_600)], v * 10_000)
    example = RAW_EXAMPLES[T.FNOL.name].record
    claims = [msgspec.structs.replace(example, claim_id=f"c-{i}", loss_ts_ms=base + (i * 37 % 3_600) * 1_000,
                                      lat=31.2 + (i % 20) * 0.01, lon=ex.lon, parties=[
                                          msgspec.structs.replace(p, vehicle_id=f"veh-{(i + (p.role != 'insured')) % 20}")
                                          for p in example.parties]) for i in range(100)]
    direct = WarehouseTelemetry(lambda: client).facts_for(claims)
    client.close()
    port = free_port()
    env = {**os.environ, "VOLTRISK_CLICKHOUSE_DSN": dsn, "VOLTRISK_WAREHOUSE_HTTP_PORT": str(port),
           "VOLTRISK_HOME": str(tmp_path / "home")}
    with open(tmp_path / "warehouse.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "voltrisk", "warehouse", "serve", "--no-sink"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: http_ok(url + "/ping"), 60, "the read-only endpoint")
            served = WarehouseTelemetry(lambda: http_client(url)).facts_for(claims)
        finally:
            proc.terminate()
            proc.wait(30)
    assert served == direct
    assert len(served) == 100 and all(f.telematics_available and f.third_party_in_cell is not None for f in served.values())
