"""Print the fleet-level figures quoted in docs/simulators.md.

python -m simulators.stats --vehicles 50 --days 7 --seed 7
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from simulators import drivers, fleet, reference

START_MS = 1_793_462_400_000  # 2026-11-01 00:00 Shanghai


def fleet_stats(vehicles: int, days: int, seed: int) -> dict:
    pop = drivers.build_population(vehicles, seed)
    events = list(fleet.simulate(pop, fleet.FleetConfig(start_ms=START_MS, days=days)))
    f = reference.fleet_features(events, hz=1, window_days=days)
    col = {k: np.array([v[k] for v in f.values()]) for k in next(iter(f.values()))}
    km, hours = col["distance_km"], col["driving_hours"]

    def per_km(name, per):  # fleet rate: events over all km
        return round(float(np.nansum(col[name] * km) / km.sum()), 3) if per else None

    return {
        "vehicles": vehicles,
        "days": days,
        "seed": seed,
        "trip_km_median": round(float(np.median(km / col["trips"])), 2),
        "trip_minutes_median": round(float(np.median(hours / col["trips"] * 60)), 1),
        "mean_speed_kmh": round(float(km.sum() / hours.sum()), 1),
        "km_per_year_median": round(float(np.median(km) * 365.25 / 30), 0),
        "trips_per_day_mean": round(float(np.mean(col["trips"]) / 30), 2),
        "hard_brake_per_100km": per_km("hard_brake_per_100km", True),
        "harsh_accel_per_100km": per_km("harsh_accel_per_100km", True),
        "harsh_turn_per_100km": per_km("harsh_turn_per_100km", True),
        "fcw_per_1000km": per_km("fcw_per_1000km", True),
        "speeding_share_mean": round(float(np.mean(col["speeding_share"])), 4),
        "night_share_mean": round(float(np.mean(col["night_share"])), 4),
        "regen_share_mean": round(float(np.nanmean(col["regen_share"])), 3),
        "true_crash_rate_mean": round(float(pop.true_rate().mean()), 4),
        "events": len(events),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Fleet-level figures of an event-level run")
    ap.add_argument("--vehicles", type=int, default=50)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    print(json.dumps(fleet_stats(a.vehicles, a.days, a.seed), indent=1))


if __name__ == "__main__":
    main()
