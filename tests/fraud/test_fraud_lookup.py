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
