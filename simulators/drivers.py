"""The latent driver model shared by the event-level fleet and the book.

Each driver has a latent risk ``z`` that shifts every habit (harsh events, speeding,
night driving, tailgating, belt use, regen use), home and work H3 res-8 cells in
Shanghai, a trip schedule, and a policy whose classical rating factors are a real
freMTPL2 row. Crashes follow a known Poisson model

    rate_per_year = BASE_RATE * exp(sum(beta_k * factor_k)) ,  crashes ~ Poisson(rate * exposure_years)

whose factors are the *latent* habits (not the noisy measured features), so a
pricing model can be scored against ``true_rate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from simulators import city
from voltrisk.settings import fremtpl2_dir

FREMTPL2_FREQ = "freMTPL2freq.csv.gz"  # in the freMTPL2 directory (voltrisk.settings.fremtpl2_dir)
POLICY_COLUMNS = ("DrivAge", "VehPower", "VehAge", "BonusMalus", "Density", "Area", "Region", "VehBrand", "VehGas")

# --- true crash model (per vehicle-year) -------------------------------------------
BASE_RATE = 0.0254  # sets the portfolio mean near 0.075 crashes per vehicle-year
BETA = {
    "log_hard_brake": 0.30,  # log(hard brakes per 100 km / 1.5)
    "log_harsh_accel": 0.15,  # log(harsh accelerations per 100 km / 1.2)
    "log_harsh_turn": 0.15,  # log(harsh turns per 100 km / 0.8)
    "speeding": 1.6,  # share of time in a speeding state
    "night": 1.2,  # share of days with a night trip
    "tailgating": 0.8,  # share of close-following time
    "unbuckled": 1.0,  # share of unbuckled trips
    "log_km": 0.5,  # log(annual km / 8,000)
    "cell_risk": 0.4,  # home-area cell risk index - 1
    "young": 0.45,  # DrivAge < 25
    "senior": 0.2,  # DrivAge >= 75
    "log_bonus_malus": 0.6,  # log(BonusMalus / 50)
    "veh_power": 0.03,  # VehPower - 6
    "unobserved": 1.0,  # N(0, 0.25) frailty no feature sees
}

# EV and battery constants (a mid-size Chinese EV: 2 t, 70 kWh pack)
PACK_KWH = 70.0
PACK_NOMINAL_V = 350.0

# VIN: real Chinese EV world-manufacturer prefixes; check digit per ISO 3779 (GB 16735)
_WMIS = ("LRW", "LSJ", "LGX", "LB3", "HJR")
_VIN_CHARS = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
_TRANSLIT = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9))),
    **dict(zip("JKLMN", range(1, 6))),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10))),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_check_digit(vin17: str) -> str:
    """ISO 3779 check digit (position 9) of a 17-character VIN."""
    total = sum(_TRANSLIT[c] * w for c, w in zip(vin17, _VIN_WEIGHTS))
    r = total % 11
    return "X" if r == 10 else str(r)


def make_vin(rng: np.random.Generator, serial: int) -> str:
    """A valid 17-character VIN (no I/O/Q, correct check digit), unique per serial."""
    wmi = _WMIS[int(rng.integers(len(_WMIS)))]
    vds = "".join(_VIN_CHARS[int(i)] for i in rng.integers(0, len(_VIN_CHARS), 5))
    year = "RS"[int(rng.integers(2))]  # model years 2024, 2025
    plant = _VIN_CHARS[10 + int(rng.integers(20))]
    body = f"{wmi}{vds}0{year}{plant}{serial % 1_000_000:06d}"
    return body[:8] + vin_check_digit(body) + body[9:]


def load_policies(path: Path | None = None):
    """The freMTPL2 frequency table (policy factors only). Needs pandas."""
    import pandas as pd

    path = Path(path or fremtpl2_dir() / FREMTPL2_FREQ)
    if not path.exists():
        raise FileNotFoundError(
            f"freMTPL2 table not found at {path}: the simulators draw policy factors from it; "
            "set VOLTRISK_FREMTPL2_DIR to the directory holding it (default ../shared/data/freMTPL2 beside the repo)"
        )
    return pd.read_csv(path, usecols=list(POLICY_COLUMNS))


def _logistic(v):
    return 1.0 / (1.0 + np.exp(-v))


@dataclass(frozen=True)
class Population:
    """Columnar driver population: every attribute is an array indexed by driver."""

    seed: int
    vin: np.ndarray
    policy: dict  # freMTPL2 columns -> arrays
    z: np.ndarray  # latent risk, N(0,1) shifted by age and bonus-malus
    hard_brake_per_100km: np.ndarray
    harsh_accel_per_100km: np.ndarray
    harsh_turn_per_100km: np.ndarray
    fcw_per_1000km: np.ndarray
    thermal_per_1000km: np.ndarray
    speeding_p: np.ndarray  # share of driving time in a speeding state
    speed_factor: np.ndarray  # cruising speed / limit when not speeding
    night_p: np.ndarray  # probability of a night round trip on a given day
    headway_mean_s: np.ndarray  # typical time gap to the lead vehicle
    tailgating_p: np.ndarray  # share of following time closer than 1 s
    unbuckled_p: np.ndarray  # probability a trip is driven unbuckled
    regen_p: np.ndarray  # share of braking done with regen (one-pedal)
    commute_p: np.ndarray  # probability of commuting on a weekday
    depart_h: np.ndarray  # local hour the commute starts
    errand_rate: np.ndarray  # errand round trips per weekday
    errand_km: np.ndarray  # median errand route length
    charge_below_pct: np.ndarray
    charge_to_pct: np.ndarray
    home_xy: np.ndarray  # (n, 2) metres from the centre
    work_xy: np.ndarray
    home_cell: np.ndarray  # uint64 H3 res-8
    work_cell: np.ndarray
    commute_km: np.ndarray
    home_cell_risk: np.ndarray
    area_risk: np.ndarray  # mean cell risk within ~3 km of home (errands)
    commute_risk: np.ndarray  # mean cell risk along the commute route
    frailty: np.ndarray  # unobserved log-rate term

    @property
    def n(self) -> int:
        return len(self.z)

    @cached_property
    def annual_km(self) -> np.ndarray:
        """Expected km per year of each driver."""
        return self.km_per_day() * 365.25

    @cached_property
    def rate(self) -> np.ndarray:
        """``true_rate()`` at the expected annual km (cached: the fleet asks per trip)."""
        return self.true_rate()

    def trips_per_day(self) -> np.ndarray:
        """Expected trips per day from the schedule (5 weekdays, weekends 1.5x errands)."""
        return 2 * (self.commute_p * 5 / 7 + self.errand_rate * (5 + 2 * 1.5) / 7 + self.night_p)

    def km_per_day(self) -> np.ndarray:
        """Expected km per day: commute round trips + errand and night round trips
        (route lengths lognormal, sigma 0.5 -> mean = median * exp(0.125))."""
        mean_errand = self.errand_km * math.exp(0.125)
        return 2 * (
            self.commute_p * 5 / 7 * self.commute_km
            + self.errand_rate * (5 + 2 * 1.5) / 7 * mean_errand
            + self.night_p * mean_errand * 1.5
        )

    def log_rate_terms(self, annual_km: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Factor values of the true crash model (before multiplying by BETA)."""
        km = self.km_per_day() * 365.25 if annual_km is None else annual_km
        age = self.policy["DrivAge"]
        return {
            "log_hard_brake": np.log(self.hard_brake_per_100km / 1.5),
            "log_harsh_accel": np.log(self.harsh_accel_per_100km / 1.2),
            "log_harsh_turn": np.log(self.harsh_turn_per_100km / 0.8),
            "speeding": self.speeding_p,
            "night": self.night_p,
            "tailgating": self.tailgating_p,
            "unbuckled": self.unbuckled_p,
            "log_km": np.log(np.maximum(km, 100.0) / 8_000.0),
            "cell_risk": self.home_cell_risk - 1.0,
            "young": (age < 25).astype(float),
            "senior": (age >= 75).astype(float),
            "log_bonus_malus": np.log(self.policy["BonusMalus"] / 50.0),
            "veh_power": self.policy["VehPower"] - 6.0,
            "unobserved": self.frailty,
        }

    def true_rate(self, annual_km: np.ndarray | None = None) -> np.ndarray:
        """Expected crashes per vehicle-year (the Poisson mean per unit exposure)."""
        terms = self.log_rate_terms(annual_km)
        return BASE_RATE * np.exp(sum(BETA[k] * v for k, v in terms.items()))


def _random_cell_xy(rng: np.random.Generator, n: int, centres: np.ndarray, spread_m: float) -> np.ndarray:
    pick = centres[rng.integers(len(centres), size=n)]
    return pick + rng.normal(0.0, spread_m, size=(n, 2))


def _snap_to_cells(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Snap positions to their H3 res-8 cell centres (homes and workplaces are cells)."""
    lat, lon = city.to_latlon(xy[:, 0], xy[:, 1])
    cells = city.cells_of(lat, lon)
    import h3

    centres = np.array([h3.cell_to_latlng(h3.int_to_str(int(c))) for c in cells])
    x, y = city.to_xy(centres[:, 0], centres[:, 1])
    return np.column_stack([x, y]), cells


def _route_risk(path: np.ndarray, step_m: float = 250.0) -> float:
    cum = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(path, axis=0)).sum(axis=1))])
    s = np.arange(0.0, cum[-1], step_m)
    lat, lon = city.to_latlon(np.interp(s, cum, path[:, 0]), np.interp(s, cum, path[:, 1]))
    return float(np.mean([city.cell_risk_index(int(c)) for c in city.cells_of(lat, lon)]))


_RING = np.array(
    [
        (r * math.cos(a), r * math.sin(a))
        for r in (1_500.0, 3_000.0)
        for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)
    ]
)


def _area_risk(home: np.ndarray) -> float:
    pts = home + _RING
    lat, lon = city.to_latlon(pts[:, 0], pts[:, 1])
    return float(np.mean([city.cell_risk_index(int(c)) for c in city.cells_of(lat, lon)]))


def build_population(n: int, seed: int, policies=None) -> Population:
    """Draw ``n`` drivers deterministically from ``seed``.

    >>> p = build_population(3, seed=7)
    >>> p.n, len(p.vin[0])
    (3, 17)
    """
    rng = np.random.default_rng([seed, 1])
    policies = load_policies() if policies is None else policies
    rows = rng.integers(len(policies), size=n)
    pol = {c: policies[c].to_numpy()[rows] for c in POLICY_COLUMNS}
    age, bm = pol["DrivAge"].astype(float), pol["BonusMalus"].astype(float)
    # risk is partly visible in classical factors: young drivers and high bonus-malus
    z = rng.normal(size=n) * 0.9 + 0.4 * (age < 26) + 0.5 * np.log(bm / 50.0)

    def noise():
        return rng.normal(size=n)

    home_r = np.clip(rng.lognormal(math.log(9_000), 0.5, size=n), 1_000, 24_000)
    home_a = rng.uniform(-math.pi, math.pi, size=n)
    home_xy, home_cell = _snap_to_cells(np.column_stack([home_r * np.cos(home_a), home_r * np.sin(home_a)]))
    work_xy, work_cell = _snap_to_cells(
        _random_cell_xy(
            rng,
            n,
            np.column_stack(
                city.to_xy(np.array([h[0] for h in city.WORK_HUBS]), np.array([h[1] for h in city.WORK_HUBS]))
            ),
            2_500.0,
        )
    )
    commute_km = np.array([city.route_length_m(h, w) for h, w in zip(home_xy, work_xy)]) / 1000.0
    return Population(
        seed=seed,
        vin=np.array([make_vin(rng, i) for i in range(n)]),
        policy=pol,
        z=z,
        hard_brake_per_100km=np.exp(math.log(1.5) + 0.55 * z + 0.35 * noise()),
        harsh_accel_per_100km=np.exp(math.log(1.2) + 0.5 * z + 0.4 * noise()),
        harsh_turn_per_100km=np.exp(math.log(0.8) + 0.5 * z + 0.4 * noise()),
        fcw_per_1000km=np.exp(math.log(3.0) + 0.6 * z + 0.4 * noise()),
        thermal_per_1000km=np.exp(math.log(0.3) + 0.8 * noise()),
        speeding_p=_logistic(-2.2 + 0.8 * z + 0.5 * noise()),
        speed_factor=rng.uniform(0.85, 1.0, size=n),
        night_p=_logistic(-2.6 + 0.5 * z + 0.8 * noise()),
        headway_mean_s=np.exp(math.log(1.9) - 0.2 * z + 0.15 * noise()),
        tailgating_p=_logistic(-2.0 + 0.7 * z + 0.4 * noise()),
        unbuckled_p=_logistic(-3.5 + 0.7 * z + 0.8 * noise()),
        regen_p=_logistic(1.5 - 0.3 * z + 0.8 * noise()),
        commute_p=rng.uniform(0.5, 1.0, size=n),
        depart_h=rng.uniform(6.5, 9.5, size=n),
        errand_rate=rng.uniform(0.2, 1.0, size=n),
        errand_km=rng.lognormal(math.log(5.0), 0.3, size=n),
        charge_below_pct=rng.uniform(20.0, 45.0, size=n),
        charge_to_pct=rng.uniform(80.0, 95.0, size=n),
        home_xy=home_xy,
        work_xy=work_xy,
        home_cell=home_cell,
        work_cell=work_cell,
        commute_km=commute_km,
        home_cell_risk=np.array([city.cell_risk_index(int(c)) for c in home_cell]),
        area_risk=np.array([_area_risk(h) for h in home_xy]),
        commute_risk=np.array([_route_risk(city.grid_route(h, w)) for h, w in zip(home_xy, work_xy)]),
        frailty=rng.normal(0.0, 0.25, size=n),
    )


# Linear maps latent attributes -> expected event-level feature, fitted by
# ``python -m simulators.calibrate`` (see there); pinned by the agreement test.
EXPECTED_COEF: dict[str, list[float]] = {
    "mean_speed_kmh": [5.4492, 21.99041, 19.26573, 1.66051, -0.39826],
    "speeding_share": [0.2791, 0.16913],
    "unsafe_following_share": [-0.00237, 0.11459],
    "night_share": [0.88514],
    "soc_trip_start_mean": [5.42284, 0.87219],
    "cell_risk_exposure_weighted": [0.40171, 0.55881, 0.03651],
}


def feature_design(pop: Population, name: str) -> np.ndarray:
    """Predictor columns of the linear map for feature ``name``."""
    errand_mean = pop.errand_km * math.exp(0.125)
    night_km = 2 * pop.night_p * 1.5 * errand_mean
    commute_km_day = 2 * pop.commute_p * 5 / 7 * pop.commute_km
    one = np.ones(pop.n)
    cols = {
        "mean_speed_kmh": lambda: [
            one,
            pop.speed_factor,
            pop.speeding_p,
            np.log(pop.commute_km),
            commute_km_day / pop.km_per_day(),
        ],
        "speeding_share": lambda: [pop.speeding_p, pop.speeding_p * pop.speed_factor],
        "unsafe_following_share": lambda: [pop.tailgating_p, pop.tailgating_p * pop.speeding_p],
        "night_share": lambda: [night_km / pop.km_per_day()],
        "soc_trip_start_mean": lambda: [one, (pop.charge_below_pct + pop.charge_to_pct) / 2],
        "cell_risk_exposure_weighted": lambda: [
            one,
            pop.area_risk,
            pop.commute_risk * commute_km_day / pop.km_per_day(),
        ],
    }[name]()
    return np.column_stack(cols)


def expected_features(pop: Population) -> dict[str, np.ndarray]:
    """Each driver's expected 30-day feature values (the centre the book draws around)."""
    km_30d = pop.km_per_day() * 30.0
    out = {name: feature_design(pop, name) @ np.asarray(c) for name, c in EXPECTED_COEF.items()}
    out["mean_speed_kmh"] = np.clip(out["mean_speed_kmh"], 10.0, 90.0)
    for name in ("speeding_share", "unsafe_following_share", "night_share"):
        out[name] = np.clip(out[name], 0.0, 1.0)
    out.update(
        distance_km=km_30d,
        trips=pop.trips_per_day() * 30.0,
        driving_hours=km_30d / out["mean_speed_kmh"],
        hard_brake_per_100km=pop.hard_brake_per_100km,
        harsh_accel_per_100km=pop.harsh_accel_per_100km,
        harsh_turn_per_100km=pop.harsh_turn_per_100km,
        fcw_per_1000km=pop.fcw_per_1000km,
        thermal_alarms_per_1000km=pop.thermal_per_1000km,
        unbuckled_share=pop.unbuckled_p,
        regen_share=pop.regen_p,
    )
    return out
