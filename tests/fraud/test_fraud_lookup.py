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
