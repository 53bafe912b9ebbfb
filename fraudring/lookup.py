"""Telemetry around a claimed loss, read from the warehouse for the live fraud agent.

For each claim the insured vehicle's state, dynamics and crash records within
±10 min of the claimed loss time are read (parameterised queries over the
read-only endpoint or a server) and handed to ``fraudring.verify`` as records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from stream.records import CrashV1, DynamicsV1, FnolV1, StateV1

WINDOW_MS = 10 * 60 * 1000
_TABLES = (("telemetry_state", StateV1), ("telemetry_dynamics", DynamicsV1), ("telemetry_crash", CrashV1))


def insured_vehicle(claim: FnolV1) -> str | None:
    return next((p.vehicle_id for p in claim.parties if p.role == "insured" and p.vehicle_id), None)


class WarehouseTelemetry:
    """``connect`` makes the ClickHouse client, on first use and again after a failed
    read, so a worker starts while the warehouse is away and reconnects when it is back."""

    def __init__(self, connect: Callable[[], Any]):
        self._connect = connect
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = self._connect()
        return self._client

    def records_for(self, claims: Sequence[FnolV1]) -> dict[str, list]:
        """claim id -> the insured vehicle's records around the loss (claims without
        an identified insured vehicle are left out: judged ``no_telematics``). A failed
        read drops the client, to connect again on the next call."""
        try:
            return self._records_for(claims)
        except Exception:
            self._client = None
            raise

    def _records_for(self, claims: Sequence[FnolV1]) -> dict[str, list]:
        out: dict[str, list] = {}
        for claim in claims:
            vid = insured_vehicle(claim)
            if vid is None:
                continue
            recs: list = []
            params = {"v": vid, "a": claim.loss_ts_ms - WINDOW_MS, "b": claim.loss_ts_ms + WINDOW_MS}
            for table, typ in _TABLES:
                cols = typ.__struct_fields__
                res = self.client.query(
                    f"SELECT {', '.join(cols)} FROM {table} FINAL WHERE vehicle_id = {{v:String}} "
                    "AND ts_ms BETWEEN {a:Int64} AND {b:Int64} ORDER BY ts_ms",
                    parameters=params,
                )
                recs.extend(_record(typ, dict(zip(cols, row))) for row in res.result_rows)
            out[claim.claim_id] = sorted(recs, key=lambda r: r.ts_ms)
        return out


def _record(typ: type, row: dict):
    """A stored row as its record. The gate validated it; what the table gives back may
    sit just outside the contract's bounds (a Float32 column rounds a heading of
    359.99999° to 360.0), which must not make the claim unreadable: such a row is taken
    as stored, without the bounds."""
    try:
        return msgspec.convert(row, typ, strict=False)
    except msgspec.ValidationError:
        return typ(**row)
