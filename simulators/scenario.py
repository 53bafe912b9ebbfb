"""The event-level scenario: the fleet plus the claims system, day by day.

Each simulated day, every vehicle drives its schedule (``fleet``), then the claims
system files what happened that day: a genuine claim for each crash, claims of the
wider non-telematics portfolio, ring claims and opportunistic fraud. Verification
facts are read from what the vehicles really did (their traces), exactly what the
live pipeline should find in the telemetry. Ground truth is collected in ``Truth``.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h3
import numpy as np

from simulators import city, claims, drivers, fleet

TOPIC_FNOL = "claims.fnol.v1"
IN_CELL_WINDOW_MS = 10 * 60_000


@dataclass(frozen=True)
class ClaimsConfig:
    rings: int = 3
    ring_size: tuple[int, int] = (4, 8)
    ring_claims_per_member: float = 1.5
    ring_days: int | None = None  # ring claims fall in the first this many days (None: any day of the run)
    opportunistic_per_vehicle_year: float = 0.01
    portfolio_policies: int = 10_000  # non-telematics policies whose claims share the topic
    portfolio_claims_per_year: float = 0.075


@dataclass
class Truth:
    """Ground truth of an event-level run."""

    claims: list[dict] = field(default_factory=list)  # full claims-book rows (with facts and truth)
    rings: list[dict] = field(default_factory=list)
    crashes: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def write(self, directory: Path, pop: drivers.Population) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "claims_truth.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(claims.CLAIM_COLUMNS))
            w.writeheader()
            w.writerows(self.claims)
        with open(directory / "rings.jsonl", "w") as fh:
            fh.writelines(json.dumps(r, sort_keys=True) + "\n" for r in self.rings)
        with open(directory / "crashes.jsonl", "w") as fh:
            fh.writelines(json.dumps(c, sort_keys=True) + "\n" for c in self.crashes)
        rate = pop.true_rate()
        with open(directory / "drivers.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["vehicle_id", "true_rate", "z", "home_cell", "work_cell"])
            for k in range(pop.n):
                w.writerow(
                    [
                        pop.vin[k],
                        round(float(rate[k]), 6),
                        round(float(pop.z[k]), 4),
                        int(pop.home_cell[k]),
                        int(pop.work_cell[k]),
                    ]
                )


class Scenario:
    """Fleet + claims for ``pop`` under ``fcfg``/``ccfg``; iterate ``events()``."""

    def __init__(self, pop: drivers.Population, fcfg: fleet.FleetConfig, ccfg: ClaimsConfig):
        self.pop, self.fcfg, self.ccfg = pop, fcfg, ccfg
        self.rng = np.random.default_rng([pop.seed, 7])
        # claim ids name the seed and the first day, so reruns on other days never reuse them
        first_day = (fcfg.start_ms + fleet.LOCAL_UTC_OFFSET_MS) // fleet.DAY_MS
        self.fac = claims.ClaimFactory(self.rng, claims.load_severities(), prefix=f"SIM{pop.seed}-{first_day}")
        self.states = [fleet.initial_state(pop, i) for i in range(pop.n)]
        self.holders = [self.fac.ents.person(str(pop.vin[i]), f"POL-{i:07d}", telematics=True) for i in range(pop.n)]
        self.truth = Truth()
        self._later: list[tuple[int, int, fleet.Event]] = []  # records of a later day than the one being emitted
        self._tie = itertools.count()
        self._filed: dict[str, dict] = {}  # claim id -> claims-book row, until its FNOL is emitted
        self._plan_rings()

    def _plan_rings(self) -> None:
        """Rings recruit fleet vehicles (so the telematics can contradict them) and outsiders."""
        rng, c = self.rng, self.ccfg
        self.ring_claims: dict[int, list[tuple[claims.Ring, str, int, int | None]]] = {}
        self.ring_members: list[list[int | None]] = []
        free = list(rng.permutation(self.pop.n))
        self.rings: list[claims.Ring] = []
        for j in range(c.rings):
            size = int(rng.integers(c.ring_size[0], c.ring_size[1] + 1))
            members, fleet_idx = [], []
            for m in range(size):
                if free and rng.random() < 0.7:
                    k = int(free.pop())
                    members.append(self.holders[k])
                    fleet_idx.append(k)
                else:
                    members.append(
                        self.fac.ents.person(drivers.make_vin(rng, 700_000 + 20 * j + m), f"POL-R{j:03d}{m:02d}")
                    )
                    fleet_idx.append(None)
            ring = self.fac.make_ring(f"ring-{self.pop.seed}-{j:03d}", members)
            self.rings.append(ring)
            self.ring_members.append(fleet_idx)
            for kind, a, b in claims.ring_plan(rng, ring, c.ring_claims_per_member):
                day = int(rng.integers(min(self.fcfg.days, c.ring_days or self.fcfg.days)))
                self.ring_claims.setdefault(day, []).append((ring, kind, a, b))
            self.truth.rings.append({"ring_id": ring.ring_id, "claim_ids": []})

    # --- what the telemetry says -------------------------------------------------------------

    def _where(self, k: int, ts_ms: int) -> tuple[float, float, float, bool]:
        """(lat, lon, speed_kmh, parked) of fleet vehicle ``k`` at ``ts_ms`` from its traces."""
        st = self.states[k]
        last = None
        for tr in st.traces:
            if tr.start_ms <= ts_ms <= tr.end_ms:
                j = min(int(np.searchsorted(tr.ts_ms, ts_ms)), len(tr.ts_ms) - 1)
                return float(tr.lat[j]), float(tr.lon[j]), float(tr.speed_kmh[j]), False
            if tr.end_ms < ts_ms:
                last = tr
        if last is not None:
            return float(last.lat[-1]), float(last.lon[-1]), 0.0, True
        lat, lon = city.to_latlon(*st.pos_xy)
        return float(lat), float(lon), 0.0, True

    def _in_cell(self, k: int, ts_ms: int, cell: int) -> bool:
        near = {h3.str_to_int(c) for c in h3.grid_disk(h3.int_to_str(cell), 1)}
        pts = [self._where(k, t) for t in range(ts_ms - IN_CELL_WINDOW_MS, ts_ms + IN_CELL_WINDOW_MS + 1, 60_000)]
        return any(city.cell_of(lat, lon) in near for lat, lon, _, _ in pts)

    def facts(self, d: claims.Draft, k_ins: int | None, k_tp: int | None) -> claims.Facts:
        if k_ins is None:
            tp = None if k_tp is None else self._in_cell(k_tp, d.loss_ts_ms, city.cell_of(d.lat, d.lon))
            return claims.Facts(False, third_party_in_cell=tp)
        cell = city.cell_of(d.lat, d.lon)
        crash = next(
            (c for c in self.states[k_ins].crashes if abs(c["ts_ms"] - d.loss_ts_ms) <= IN_CELL_WINDOW_MS), None
        )
        _, _, speed, parked = self._where(k_ins, d.loss_ts_ms)
        charging = any(a <= d.loss_ts_ms <= b for a, b, _, _ in self.states[k_ins].charging)
        return claims.Facts(
            telematics_available=True,
            insured_in_cell=self._in_cell(k_ins, d.loss_ts_ms, cell),
            third_party_in_cell=None if k_tp is None else self._in_cell(k_tp, d.loss_ts_ms, cell),
            crash_pulse_found=crash is not None,
            crash_delta_v_kmh=crash["delta_v_kmh"] if crash else 0.0,
            speed_at_loss_kmh=crash["speed_kmh"] if crash else speed,
            parked_or_charging_at_loss=parked or charging,
        )

    # --- the day's claims ----------------------------------------------------------------------

    def _fleet_index(self, p: claims.Person | None) -> int | None:
        if p is None or not p.telematics:
            return None
        return int(p.policy_id.split("-")[1])

    def _claims_for_day(self, day: int, day_start: int) -> list[claims.Draft]:
        rng, fac, pop = self.rng, self.fac, self.pop
        drafts: list[claims.Draft] = []
        for st in self.states:
            for c in st.crashes:
                if day_start <= c["ts_ms"] < day_start + fleet.DAY_MS:
                    serial = 600_000 + len(self._filed) + len(self.truth.claims)
                    third = fac.ents.person(drivers.make_vin(rng, serial)) if rng.random() < 0.55 else None
                    drafts.append(
                        fac.genuine(
                            self.holders[c["vehicle"]],
                            c["ts_ms"],
                            c["lat"] + rng.normal(0, 2e-4),
                            c["lon"] + rng.normal(0, 2e-4),
                            third,
                        )
                    )
                    self.truth.crashes.append(c)
        # the wider portfolio (no telematics): genuine claims anywhere in the city
        for _ in range(rng.poisson(self.ccfg.portfolio_policies * self.ccfg.portfolio_claims_per_year / 365.25)):
            who = fac.ents.person(
                drivers.make_vin(rng, int(rng.integers(1_000_000))), f"POL-X{int(rng.integers(10**7)):07d}"
            )
            lat, lon = city.to_latlon(*rng.normal(0.0, 8_000.0, 2))
            third = (
                fac.ents.person(drivers.make_vin(rng, int(rng.integers(1_000_000)))) if rng.random() < 0.55 else None
            )
            drafts.append(fac.genuine(who, day_start + int(rng.integers(fleet.DAY_MS)), float(lat), float(lon), third))
        # opportunistic: a fleet policyholder claims a dent "while parked" where the car really stood
        for _ in range(rng.poisson(pop.n * self.ccfg.opportunistic_per_vehicle_year / 365.25)):
            k = int(rng.integers(pop.n))
            t = day_start + int(rng.integers(fleet.DAY_MS))
            lat, lon, _, _ = self._where(k, t)
            drafts.append(fac.opportunistic(self.holders[k], t, lat, lon))
        for ring, kind, a, b in self.ring_claims.get(day, []):
            drafts.append(self._ring_claim(ring, kind, a, b, day_start))
        return drafts

    def _ring_claim(self, ring: claims.Ring, kind: str, a: int, b: int | None, day_start: int) -> claims.Draft:
        """Staged: claimed where the insured car really was, at a slow moment, without an impact.
        Phantom: claimed several km from where the car really was."""
        rng = self.rng
        ins, tp = ring.members[a], ring.members[b] if b is not None else None
        k = self._fleet_index(ins)
        t = day_start + int(rng.integers(3_600_000, 22 * 3_600_000))
        if k is not None:
            slow = [
                (tr, j)
                for tr in self.states[k].traces
                if tr.start_ms >= day_start
                for j in np.flatnonzero(tr.speed_kmh < 15.0)
            ]
            if kind != "phantom_ring" and slow:
                tr, j = slow[int(rng.integers(len(slow)))]
                t = int(tr.ts_ms[j])
            elif kind == "phantom_ring":  # a time the car stood still for 20 minutes: it cannot drive to the scene
                for _ in range(50):
                    if all(self._where(k, t + dt)[3] for dt in (-IN_CELL_WINDOW_MS, 0, IN_CELL_WINDOW_MS)):
                        break
                    t = day_start + int(rng.integers(3_600_000, 22 * 3_600_000))
            lat, lon, _, _ = self._where(k, t)
        else:
            lat, lon = (float(v) for v in city.to_latlon(*rng.normal(0.0, 8_000.0, 2)))
        if kind == "phantom_ring":
            bearing = rng.uniform(0, 2 * math.pi)
            x, y = city.to_xy(lat, lon)
            lat, lon = (float(v) for v in city.to_latlon(x + 6_000 * math.cos(bearing), y + 6_000 * math.sin(bearing)))
        return self.fac.ring_claim(ring, kind, ins, tp, t, lat, lon)

    def _reported(self, row: dict) -> None:
        """Truth holds the claims that reached the stream (a stopped real-time run has
        filed claims whose report time had not come yet)."""
        self.truth.claims.append(row)
        if row["ring_id"]:
            next(r for r in self.truth.rings if r["ring_id"] == row["ring_id"])["claim_ids"].append(row["claim_id"])

    # --- the stream --------------------------------------------------------------------------------

    def events(self) -> Iterator[fleet.Event]:
        """Telemetry and FNOL records, day by day; within a day in time order."""
        for day in range(self.fcfg.days):
            day_start = self.fcfg.start_ms + day * fleet.DAY_MS
            per_vehicle = [
                fleet.simulate_vehicle_day(self.pop, i, day, self.fcfg, self.states[i]) for i in range(self.pop.n)
            ]
            fnol = []
            for d in self._claims_for_day(day, day_start):
                k_ins, k_tp = self._fleet_index(d.insured), self._fleet_index(d.third)
                row = claims.to_row(d, self.facts(d, k_ins, k_tp), self.rng)
                self._filed[row["claim_id"]] = row
                fnol.append(fleet.Event(row["ts_ms"], TOPIC_FNOL, row["claim_id"], claims.to_fnol(row)))
            # claims are reported hours to days after the loss, and night drives and overnight
            # charging run past midnight: hold whatever belongs to a later day until that day,
            # so the stream is in time order (and real-time pacing never waits on a claim)
            day_end = day_start + fleet.DAY_MS
            last = day == self.fcfg.days - 1
            fnol.sort(key=lambda e: e.ts_ms)
            now = []
            for e in heapq.merge(*per_vehicle, fnol, key=lambda e: e.ts_ms):
                if e.ts_ms < day_end or last:
                    now.append(e)
                else:
                    heapq.heappush(self._later, (e.ts_ms, next(self._tie), e))
            held = []
            while self._later and (self._later[0][0] < day_end or last):
                held.append(heapq.heappop(self._later)[2])
            for e in heapq.merge(held, now, key=lambda e: e.ts_ms):
                self.truth.counts[e.topic] += 1
                if e.topic == TOPIC_FNOL:
                    self._reported(self._filed.pop(e.key))
                yield e
            for st in self.states:  # verification looks back at most a day
                st.traces = [tr for tr in st.traces if tr.end_ms >= day_start]
        for ring, truth in zip(self.rings, self.truth.rings):
            truth.update(claims.ring_truth(ring, truth["claim_ids"]))
