"""Telemetry around a claimed loss, read from the warehouse for the live fraud agent.

For each claim the insured vehicle's state, dynamics and crash records within
±10 min of the claimed loss time are read (parameterised queries over the
read-only endpoint or a server, one per table for up to ``CLAIMS_PER_QUERY``
claims) and handed to ``fraudring.verify`` as records.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import msgspec

from stream.records import CrashV1, DynamicsV1, FnolV1, StateV1

WINDOW_MS = 10 * 60 * 1000
# claims whose windows one query reads: three queries a chunk, not three a claim (a
# backlog of claims after an outage was read at ~40 claims/s one by one); a chunk's
# parameters are a few kB, which clickhouse-connect sends in the body past 4 KiB
CLAIMS_PER_QUERY = 100
_TS = attrgetter("ts_ms")
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
        wanted = [(claim, vid) for claim in claims if (vid := insured_vehicle(claim)) is not None]
        out: dict[str, list] = {claim.claim_id: [] for claim, _ in wanted}
        for i in range(0, len(wanted), CLAIMS_PER_QUERY):
            self._read_windows(wanted[i:i + CLAIMS_PER_QUERY], out)
        for recs in out.values():
            recs.sort(key=_TS)  # stable: a state, then dynamics, then a crash at one instant
        return out

    def _read_windows(self, part: Sequence[tuple[FnolV1, str]], out: dict[str, list]) -> None:
        """One query per table for a chunk of claims: the OR of their (vehicle, time window)
        ranges, which the tables' sort key (vehicle_id, ts_ms, ...) reads range by range;
        each row goes to every claim of its vehicle whose window holds it."""
        windows: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        params: dict[str, object] = {}
        for k, (claim, vid) in enumerate(part):
            a, b = claim.loss_ts_ms - WINDOW_MS, claim.loss_ts_ms + WINDOW_MS
            windows[vid].append((a, b, claim.claim_id))
            params.update({f"v{k}": vid, f"a{k}": a, f"b{k}": b})
        where = " OR ".join(f"(vehicle_id = {{v{k}:String}} AND ts_ms BETWEEN {{a{k}:Int64}} AND {{b{k}:Int64}})"
                            for k in range(len(part)))
        for table, typ in _TABLES:
            cols = typ.__struct_fields__
            res = self.client.query(
                f"SELECT vehicle_id, {', '.join(cols)} FROM {table} FINAL WHERE {where} ORDER BY vehicle_id, ts_ms",
                parameters=params,
            )
            for vid, *values in res.result_rows:
                rec = _record(typ, dict(zip(cols, values)))
                for a, b, claim_id in windows[vid]:
                    if a <= rec.ts_ms <= b:
                        out[claim_id].append(rec)


def _record(typ: type, row: dict):
    """A stored row as its record. The gate validated it; what the table gives back may
    sit just outside the contract's bounds (a Float32 column rounds a heading of
    359.99999° to 360.0), which must not make the claim unreadable: such a row is taken
    as stored, without the bounds."""
    try:
        return msgspec.convert(row, typ, strict=False)
    except msgspec.ValidationError:
        return typ(**row)
