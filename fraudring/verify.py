"""Telematics verification of a claim.

Two steps with one definition each, so the simulated book and the live pipeline
judge claims the same way:

1. ``facts_from_telemetry``: what the insured vehicle's own records
   (``StateV1``, ``DynamicsV1``, ``CrashV1``) say around the claimed loss time
   -> ``TelematicsFacts`` (the same fields the claims book carries).
2. ``judge``: facts + claimed amount -> a verdict (``consistent``,
   ``contradicted``, ``no_telematics``) with its evidence in plain sentences.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import h3

from stream.features.cells import cell_of
from stream.records import CrashV1, DynamicsV1, StateV1

WINDOW_MS = 10 * 60_000  # telemetry this close to the claimed loss time counts
# A car sends nothing while it stands switched off: with no record in the window, the
# last one before it, this far back at most, tells where it stood if it was parked there.
PARKED_LOOKBACK_MS = 72 * 3_600_000
H3_RES = 8
# Below this claimed amount a bump may not trigger the crash sensor at all.
MIN_PULSE_AMOUNT_EUR = 1_500.0
# A dynamics sample this hard is an impact even without an airbag-module pulse.
IMPACT_ACCEL_MPS2 = 20.0
STATIONARY_KMH = 3.0


@dataclass(frozen=True)
class TelematicsFacts:
    """What telemetry says about one claim (claims-book columns, same names)."""

    telematics_available: bool
    insured_in_cell: bool = False
    third_party_in_cell: bool | None = None  # None: the other vehicle is not ours
    crash_pulse_found: bool = False
    crash_delta_v_kmh: float = 0.0
    speed_at_loss_kmh: float = 0.0
    parked_or_charging_at_loss: bool = False
    # distance from the claimed place to the nearest position in the window, when known
    nearest_km: float | None = None


@dataclass(frozen=True)
class Verification:
    verdict: str  # "consistent" | "contradicted" | "no_telematics"
    facts: TelematicsFacts
    evidence: list[str] = field(default_factory=list)


NO_TELEMATICS = TelematicsFacts(telematics_available=False)


def plausible_max_amount_eur(delta_v_kmh: float) -> float:
    """Largest repair bill a crash pulse of ``delta_v_kmh`` plausibly explains.
    Repair cost grows roughly with impact energy (delta-v squared); the constants
    put a 10 km/h car-park bump at 7,500 EUR and a 25 km/h impact above 39,000 EUR."""
    return 1_500.0 + 60.0 * delta_v_kmh**2


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 12_742.0 * math.asin(math.sqrt(a))


def near_cells(lat: float, lon: float) -> set[int]:
    """The claimed res-8 cell and its first ring, as integers."""
    return {h3.str_to_int(c) for c in h3.grid_disk(h3.latlng_to_cell(lat, lon, H3_RES), 1)}


def facts_from_telemetry(loss_ts_ms: int, lat: float, lon: float,
                         records: Iterable[StateV1 | DynamicsV1 | CrashV1]) -> TelematicsFacts:
    """Facts for a claim from the insured vehicle's records (any order, any span).
    Those within ±10 min of ``loss_ts_ms`` are used; when there are none, the vehicle's
    last record before them (``PARKED_LOOKBACK_MS`` back at most), if it is a state
    saying the car was parked (``parked``): it stood there, switched off, at the loss."""
    records = list(records)
    window = [r for r in records if abs(r.ts_ms - loss_ts_ms) <= WINDOW_MS]
    if not window:
        stood = parked_before(loss_ts_ms, records)
        return NO_TELEMATICS if stood is None else facts_parked_at(lat, lon, stood.lat, stood.lon, stood.speed_kmh)
    cells = near_cells(lat, lon)
    crashes = [r for r in window if isinstance(r, CrashV1)]
    moving = [r for r in window if isinstance(r, (StateV1, DynamicsV1))]
    nearest = min(moving, key=lambda r: abs(r.ts_ms - loss_ts_ms), default=None)
    states = [r for r in window if isinstance(r, StateV1)]
    state = min(states, key=lambda r: abs(r.ts_ms - loss_ts_ms), default=None)
    return facts_from_window(
        lat, lon, in_cell=any(cell_of(r.lat, r.lon) in cells for r in window),
        positions=[(r.lat, r.lon) for r in window],
        speed_at_loss=nearest.speed_kmh if nearest is not None else None,
        parked_at_loss=state is not None and parked(state.gear, state.vehicle_status, state.charging_state),
        crashes=[(c.delta_v_kmh, c.speed_before_kmh) for c in crashes],
        impact_delta_v=0.0 if crashes else _dynamics_delta_v(
            sorted((r for r in window if isinstance(r, DynamicsV1)), key=lambda r: r.ts_ms)),
    )


def third_party_in_cell(loss_ts_ms: int, lat: float, lon: float,
                        records: Iterable[StateV1 | DynamicsV1 | CrashV1]) -> bool | None:
    """Whether the third party's vehicle, when it is one of ours, was in the claimed cell
    or its first ring within ±10 min of the loss (or stood parked there, as for the
    insured); None without its records (not ours, or silent: nothing can be said)."""
    facts = facts_from_telemetry(loss_ts_ms, lat, lon, records)
    return facts.insured_in_cell if facts.telematics_available else None


def parked_before(loss_ts_ms: int, records: Iterable[StateV1 | DynamicsV1 | CrashV1]) -> StateV1 | None:
    """The vehicle's last record before the loss window (``PARKED_LOOKBACK_MS`` back at
    most) when it is a state saying the car was parked; None otherwise (nothing there, or
    the car was last seen driving: a gap in its data, not a parked car)."""
    lo, hi = loss_ts_ms - PARKED_LOOKBACK_MS, loss_ts_ms - WINDOW_MS
    before = [r for r in records if lo <= r.ts_ms < hi and isinstance(r, (StateV1, DynamicsV1))]
    # the latest; at one instant the state (a car sends its park state with the trip's last sample)
    last = max(before, key=lambda r: (r.ts_ms, isinstance(r, StateV1)), default=None)
    if isinstance(last, StateV1) and parked(last.gear, last.vehicle_status, last.charging_state):
        return last
    return None


def facts_parked_at(lat: float, lon: float, at_lat: float, at_lon: float, speed_kmh: float) -> TelematicsFacts:
    """The facts of a claim at (``lat``, ``lon``) whose car stood parked at (``at_lat``,
    ``at_lon``) through the loss window (``parked_before``)."""
    return facts_from_window(lat, lon, in_cell=cell_of(at_lat, at_lon) in near_cells(lat, lon),
                             positions=[(at_lat, at_lon)], speed_at_loss=speed_kmh, parked_at_loss=True, crashes=[],
                             impact_delta_v=0.0)


def parked(gear: str, vehicle_status: str, charging_state: str) -> bool:
    """Whether a state record says the vehicle stands: in P, switched off, or charging parked."""
    return gear == "P" or vehicle_status == "off" or charging_state == "parked_charging"


def facts_from_window(lat: float, lon: float, *, in_cell: bool, positions: Iterable[tuple[float, float]],
                      speed_at_loss: float | None, parked_at_loss: bool, crashes: list[tuple[float, float]],
                      impact_delta_v: float) -> TelematicsFacts:
    """The facts from what a non-empty window of records says, however it was read
    (from records here, or aggregated in the warehouse by ``fraudring.lookup``):

    - ``in_cell``: a record in the claimed cell or its first ring;
    - ``positions``: candidates for the position nearest the claimed place (every
      record's, or each table's nearest);
    - ``speed_at_loss``: the state or dynamics record nearest the loss time, if any;
    - ``parked_at_loss``: ``parked`` of the state record nearest the loss time;
    - ``crashes``: (delta-v, speed before) of each crash pulse;
    - ``impact_delta_v``: ``_dynamics_delta_v`` of the dynamics, used without crashes.
    """
    delta_v = max((d for d, _ in crashes), default=0.0) if crashes else impact_delta_v
    speed = speed_at_loss if speed_at_loss is not None else max((s for _, s in crashes), default=0.0)
    nearest_km = min(_haversine_km(lat, lon, a, b) for a, b in positions)
    return TelematicsFacts(
        telematics_available=True, insured_in_cell=in_cell, crash_pulse_found=delta_v > 0.0,
        crash_delta_v_kmh=round(delta_v, 1), speed_at_loss_kmh=round(speed, 1),
        parked_or_charging_at_loss=parked_at_loss, nearest_km=round(nearest_km, 2),
    )


def _dynamics_delta_v(samples: list[DynamicsV1]) -> float:
    """Speed lost across the hardest dynamics sample when it is impact-hard; 0 otherwise."""
    hits = [i for i, s in enumerate(samples) if math.hypot(s.accel_long_mps2, s.accel_lat_mps2) >= IMPACT_ACCEL_MPS2]
    if not hits:
        return 0.0
    i = max(hits, key=lambda j: math.hypot(samples[j].accel_long_mps2, samples[j].accel_lat_mps2))
    return impact_delta_v(samples[max(0, i - 2)].speed_kmh, samples[min(len(samples) - 1, i + 2)].speed_kmh)


def impact_delta_v(speed_before: float, speed_after: float) -> float:
    """Speed lost across an impact-hard sample: from two samples before it to two after
    (or the window's first and last, nearer the edge), at least 1 km/h."""
    return max(abs(speed_before - speed_after), 1.0)


def judge(facts: TelematicsFacts, amount_eur: float) -> Verification:
    """Verdict and evidence sentences for one claim."""
    if not facts.telematics_available:
        return Verification("no_telematics", facts,
                            ["no telemetry from the insured vehicle within 10 min of the claimed loss"])
    against: list[str] = []
    support: list[str] = []
    if facts.insured_in_cell:
        support.append("insured vehicle was in the claimed place (H3 cell ±1 ring) within 10 min of the loss")
    elif facts.nearest_km is not None:
        against.append(f"insured vehicle was {facts.nearest_km:.1f} km from the claimed place within 10 min of the loss")
    else:
        against.append("insured vehicle was not in the claimed place (H3 cell ±1 ring) within 10 min of the loss")
    if facts.third_party_in_cell is False:
        against.append("third-party vehicle was not in the claimed place within 10 min of the loss")
    if facts.crash_pulse_found:
        limit = plausible_max_amount_eur(facts.crash_delta_v_kmh)
        if amount_eur > limit:
            against.append(f"crash pulse of {facts.crash_delta_v_kmh:.0f} km/h delta-v explains at most "
                           f"{limit:,.0f} EUR, claim is {amount_eur:,.0f} EUR")
        else:
            support.append(f"crash pulse of {facts.crash_delta_v_kmh:.0f} km/h delta-v near the claimed loss time")
    elif amount_eur >= MIN_PULSE_AMOUNT_EUR:
        against.append("no crash pulse within 10 min of claimed loss")
    if facts.parked_or_charging_at_loss:
        (support if facts.crash_pulse_found else against).append(
            "insured vehicle was parked or charging at the claimed loss time")
    elif facts.speed_at_loss_kmh < STATIONARY_KMH and not facts.crash_pulse_found and amount_eur >= MIN_PULSE_AMOUNT_EUR:
        against.append(f"insured vehicle was stationary ({facts.speed_at_loss_kmh:.0f} km/h) at the claimed loss time")
    return Verification("contradicted" if against else "consistent", facts, against or support)
