"""The book: tens of thousands of vehicle-years of training data from the same
latent driver model as the event-level fleet, without simulating every second.

Per vehicle and 30-day period it draws what the event level would measure:
counts of harsh events are Poisson in the period's km at the driver's rates, shares
are Beta around the driver's expected share (``drivers.expected_features``) with a
concentration set by how much driving the period holds. True crashes are Poisson
with the driver's true rate at the period's annualised km. The claims book adds
genuine claims for those crashes, a wider portfolio's claims, fraud rings and
opportunistic fraud, with verification facts drawn consistently with each claim's
true nature.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulators import city, claims, drivers
from stream.features.windows import DAILY_SUMS, feature_names, features_from_sums

PERIOD_DAYS = 30
BOOK_START_MS = 1_735_660_800_000  # 2025-01-01 00:00 Shanghai
# the feature contract is defined once, by the streaming feature functions
FEATURE_ORDER = tuple(name.removesuffix("_by_vehicle_30d") for name in feature_names(30))
# a period without driving holds what the stream computes for a window without driving
# (zero sums): 0 for the counts, rates and shares, 1.0 (the fleet average) for cell risk,
# NaN for SOC at trip start
IDLE = {stem: float(v[0]) for stem, v in
        zip(FEATURE_ORDER, features_from_sums({c: np.zeros(1) for c in DAILY_SUMS}, 30).values(), strict=True)}


def col(name: str, window_d: int = 30) -> str:
    """Contract column name of a feature: ``col("trips") == "trips_by_vehicle_30d"``."""
    return f"{name}_by_vehicle_{window_d}d"


@dataclass(frozen=True)
class BookConfig:
    vehicle_years: float = 50_000.0
    seed: int = 7
    periods: int = 12
    claims: int = 30_000  # target size of the claims book
    rings: int | None = None  # default: one per 1,500 claims
    ring_size: tuple[int, int] = (4, 12)
    opportunistic_share: float = 0.03
    claim_report_p: float = 0.9  # share of crashes that become a claim
    extra_telematics_share: float = 0.7

    @property
    def n_vehicles(self) -> int:
        return max(1, math.ceil(self.vehicle_years / (self.periods * PERIOD_DAYS / 365.25)))


def _beta(rng: np.random.Generator, mean: np.ndarray, conc: np.ndarray) -> np.ndarray:
    m = np.clip(mean, 1e-4, 1 - 1e-4)
    k = np.maximum(conc, 2.0)
    return rng.beta(m * k, (1 - m) * k)


def vehicle_book(pop: drivers.Population, cfg: BookConfig):
    """One row per vehicle and period: exposure, contract features, true rate, crash count."""
    import pandas as pd

    rng = np.random.default_rng([cfg.seed, 6])
    n, P = pop.n, cfg.periods
    exp = drivers.expected_features(pop)
    full = PERIOD_DAYS / 365.25
    # a tenth of policies start or lapse mid-period: partial exposure in the first or last period
    frac = np.ones((n, P))
    starts = rng.random(n) < 0.05
    frac[starts, 0] = rng.uniform(0.1, 1.0, starts.sum())
    lapses = rng.random(n) < 0.05
    frac[lapses, -1] = rng.uniform(0.1, 1.0, lapses.sum())
    exposure = frac * full

    def per(a):  # driver-level array broadcast over periods
        return np.repeat(np.asarray(a, dtype=float)[:, None], P, axis=1)

    activity = rng.gamma(12.0, 1 / 12.0, size=(n, P))  # holidays, busy months
    trips = rng.poisson(per(exp["trips"]) * frac * activity)
    km = np.where(trips > 0, per(exp["distance_km"]) * frac * activity * rng.gamma(25.0, 1 / 25.0, size=(n, P)), 0.0)
    speed = per(exp["mean_speed_kmh"]) * rng.normal(1.0, 0.05, size=(n, P))
    hours = km / speed
    drove = km > 0

    def rate(name, per_km):
        count = rng.poisson(per(exp[name]) * km / per_km)
        return count / np.maximum(km, 1e-9) * per_km

    def share(name, conc):
        return _beta(rng, per(exp[name]), conc)

    # values as if every period drove; periods that did not get IDLE below
    f = {
        "distance_km": km,
        "driving_hours": hours,
        "trips": trips.astype(float),
        "mean_speed_kmh": km / np.maximum(hours, 1e-9),
        "hard_brake_per_100km": rate("hard_brake_per_100km", 100.0),
        "harsh_accel_per_100km": rate("harsh_accel_per_100km", 100.0),
        "harsh_turn_per_100km": rate("harsh_turn_per_100km", 100.0),
        # time shares: spells of ~20-60 s are the independent units; trip-level habits vary per trip
        "unsafe_following_share": share("unsafe_following_share", hours * 60.0),
        "fcw_per_1000km": rate("fcw_per_1000km", 1000.0),
        "unbuckled_share": share("unbuckled_share", trips.astype(float)),
        "night_share": share("night_share", trips * 1.5),
        "speeding_share": share("speeding_share", hours * 60.0),
        "regen_share": share("regen_share", km * 2.0),
        "thermal_alarms_per_1000km": rate("thermal_alarms_per_1000km", 1000.0),
        "soc_trip_start_mean": np.clip(
            per(exp["soc_trip_start_mean"]) + rng.normal(0, 1, (n, P)) * 12.0 / np.sqrt(np.maximum(trips, 1)), 5, 100
        ),
        "cell_risk_exposure_weighted": per(exp["cell_risk_exposure_weighted"])
        + rng.normal(0, 1, (n, P)) * 0.15 / np.sqrt(np.maximum(trips, 1)),
    }
    f = {k: np.where(drove, v, IDLE[k]) for k, v in f.items()}
    annual_km = km / exposure
    true_rate = np.column_stack([pop.true_rate(np.maximum(annual_km[:, p], 100.0)) for p in range(P)])
    crashes = rng.poisson(true_rate * exposure)
    df = pd.DataFrame(
        {
            "vehicle_id": np.repeat(pop.vin, P),
            "period": np.tile(np.arange(P), n),
            "exposure_years": exposure.ravel().round(5),
            "true_rate": true_rate.ravel().round(6),
            "crash_count": crashes.ravel(),
            **{c: np.repeat(pop.policy[c], P) for c in drivers.POLICY_COLUMNS},
            **{col(k): np.round(f[k].ravel(), 5) for k in FEATURE_ORDER},
        }
    )
    return df


def claims_book(pop: drivers.Population, vb, cfg: BookConfig):
    """The claims book (contract columns + ground truth) and the ring truth records."""
    import pandas as pd

    rng = np.random.default_rng([cfg.seed, 5])
    fac = claims.ClaimFactory(rng, claims.load_severities(), prefix=f"CLM{cfg.seed}")
    ents = fac.ents
    holders = [ents.person(str(v), f"POL-{k:07d}", telematics=True) for k, v in enumerate(pop.vin)]
    period_ms = PERIOD_DAYS * 86_400_000

    def where_near(xy, spread_m):
        p = xy + rng.normal(0.0, spread_m, 2)
        lat, lon = city.to_latlon(p[0], p[1])
        return float(lat), float(lon)

    drafts: list[claims.Draft] = []
    crash_rows = np.flatnonzero(vb["crash_count"].to_numpy() > 0)
    veh, per_, cnt = (vb[c].to_numpy()[crash_rows] for c in ("vehicle_id", "period", "crash_count"))
    index = {str(v): k for k, v in enumerate(pop.vin)}
    for vin, p, c in zip(veh, per_, cnt):
        k = index[str(vin)]
        for _ in range(int(c)):
            if rng.random() >= cfg.claim_report_p:
                continue
            t = BOOK_START_MS + int(p) * period_ms + int(rng.integers(period_ms))
            lat, lon = where_near(pop.home_xy[k] if rng.random() < 0.5 else pop.work_xy[k], 3_000.0)
            third = None
            if rng.random() < 0.55:
                third = (
                    holders[int(rng.integers(len(holders)))]
                    if rng.random() < 0.1
                    else ents.person(drivers.make_vin(rng, 900_000 + len(drafts)))
                )
            drafts.append(fac.genuine(holders[k], t, lat, lon, third))

    # rings: members partly our telematics policyholders, partly outsiders
    n_rings = cfg.rings if cfg.rings is not None else max(3, cfg.claims // 1_500)
    span_ms = cfg.periods * period_ms
    rings_out = []
    for j in range(n_rings):
        size = int(rng.integers(cfg.ring_size[0], cfg.ring_size[1] + 1))
        members = [
            holders[int(rng.integers(len(holders)))]
            if rng.random() < 0.5
            else ents.person(drivers.make_vin(rng, 800_000 + 20 * j + m), f"POL-R{j:03d}{m:02d}")
            for m in range(size)
        ]
        ring = fac.make_ring(f"ring-{cfg.seed}-{j:03d}", members)
        t0 = BOOK_START_MS + int(rng.integers(max(1, span_ms - 120 * 86_400_000)))
        hot = np.column_stack(city.to_xy(*city.to_latlon(*rng.normal(0.0, 9_000.0, 2))))[0]
        ids = []
        for kind, a, b in claims.ring_plan(rng, ring, float(rng.uniform(1.0, 2.0))):
            t = t0 + int(rng.integers(120 * 86_400_000))
            lat, lon = where_near(hot, 600.0) if kind != "phantom_ring" else where_near(rng.normal(0, 9_000, 2), 500.0)
            d = fac.ring_claim(ring, kind, ring.members[a], ring.members[b] if b is not None else None, t, lat, lon)
            drafts.append(d)
            ids.append(d.claim_id)
        rings_out.append(claims.ring_truth(ring, ids))

    # the wider portfolio: genuine claims and opportunistic fraud of policies outside the training sample
    n_extra = max(0, cfg.claims - len(drafts))
    for x in range(n_extra):
        tel = rng.random() < cfg.extra_telematics_share
        who = ents.person(drivers.make_vin(rng, int(rng.integers(1_000_000))), f"POL-X{x:07d}", telematics=tel)
        t = BOOK_START_MS + int(rng.integers(span_ms))
        lat, lon = where_near(rng.normal(0.0, 8_000.0, 2), 100.0)
        if rng.random() < cfg.opportunistic_share:
            drafts.append(fac.opportunistic(who, t, lat, lon))
        else:
            third = ents.person(drivers.make_vin(rng, int(rng.integers(1_000_000)))) if rng.random() < 0.55 else None
            drafts.append(fac.genuine(who, t, lat, lon, third))

    rows = [claims.to_row(d, claims.draw_facts(rng, d), rng) for d in drafts]
    df = pd.DataFrame(rows, columns=list(claims.CLAIM_COLUMNS))
    for c in ("insured_in_cell", "third_party_in_cell", "crash_pulse_found", "parked_or_charging_at_loss"):
        df[c] = df[c].astype("boolean")
    df["cell_h3"] = df["cell_h3"].astype("uint64")
    return df.sort_values("ts_ms", kind="stable").reset_index(drop=True), rings_out


def write_book(out: Path, cfg: BookConfig, fmt: str = "parquet") -> dict:
    """Write vehicles.<fmt>, claims.<fmt>, truth/rings.jsonl, truth/claims_truth.csv and
    manifest.json into ``out``; returns the manifest."""
    out = Path(out)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    pop = drivers.build_population(cfg.n_vehicles, cfg.seed)
    vb = vehicle_book(pop, cfg)
    cb, rings = claims_book(pop, vb, cfg)
    if fmt == "parquet":
        vb.to_parquet(out / "vehicles.parquet", index=False)
        cb.to_parquet(out / "claims.parquet", index=False)
    elif fmt == "csv":
        vb.to_csv(out / "vehicles.csv", index=False)
        cb.to_csv(out / "claims.csv", index=False)
    else:
        raise ValueError(f"format {fmt!r}: use parquet or csv")
    with open(out / "truth" / "rings.jsonl", "w") as fh:
        for ring in rings:
            fh.write(json.dumps(ring, sort_keys=True) + "\n")
    cb[["claim_id", "is_fraud", "ring_id", "fraud_type"]].to_csv(out / "truth" / "claims_truth.csv", index=False)
    exposure = float(vb["exposure_years"].sum())
    manifest = {
        "seed": cfg.seed,
        "vehicles": pop.n,
        "vehicle_periods": len(vb),
        "vehicle_years": round(exposure, 1),
        "crashes": int(vb["crash_count"].sum()),
        "crash_frequency_per_vehicle_year": round(float(vb["crash_count"].sum()) / exposure, 4),
        "claims": len(cb),
        "fraud_claims": int(cb["is_fraud"].sum()),
        "rings": len(rings),
        "ring_claims": int((cb["ring_id"] != "").sum()),
        "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
