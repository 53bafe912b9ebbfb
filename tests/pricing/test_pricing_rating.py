"""Rating engine: caps, reason codes that add up, batch quotes, and the engine on the registry."""

import numpy as np
import pandas as pd
import pytest

from pricing.rating import LiveRatingEngine, RatingEngine, reason_codes
from pricing.registry import Registry, data_fingerprint
from pricing.scorers import Homogeneous, PoissonGLM
from pricing.telematics import FEATURES, TelematicsMultiplier
from pricing.testing import synthetic_book


@pytest.fixture(scope="module")
def book():
    return synthetic_book(4000, seed=31)


@pytest.fixture(scope="module")
def telematics(book):
    return TelematicsMultiplier(seed=0).fit(book, book["crash_count"], book["exposure_years"])


@pytest.fixture(scope="module")
def engine(book, telematics):
    base = book.assign(DrivAge=np.random.default_rng(1).integers(18, 90, len(book)).astype(float))
    frequency = PoissonGLM(["DrivAge"]).fit(base, base["crash_count"], base["exposure_years"])
    severity = Homogeneous().fit(base, np.full(len(base), 2500.0))
    return RatingEngine(frequency, telematics, severity), base


def test_multiplier_is_capped_and_extremes_hit_the_caps(engine):
    rating, base = engine
    extreme = pd.concat([base.head(3), base.head(3)], ignore_index=True)
    for col in FEATURES:
        extreme.loc[:2, col] = 0.0
    extreme.loc[3:, "hard_brake_per_100km_by_vehicle_30d"] = 30.0
    extreme.loc[3:, "speeding_share_by_vehicle_30d"] = 0.9
    extreme.loc[3:, "night_share_by_vehicle_30d"] = 0.9
    quotes = rating.quote(pd.concat([base, extreme], ignore_index=True))
    assert quotes["telematics_multiplier"].between(0.6, 1.5).all()
    assert quotes["telematics_multiplier"].iloc[-3:].tolist() == [1.5, 1.5, 1.5]
    np.testing.assert_allclose(quotes["premium"], quotes["base_premium"] * quotes["telematics_multiplier"])
    # severity 2,500 per claim × a frequency near the book's mean
    assert 0.05 * 2500 < quotes["base_premium"].median() < 0.5 * 2500


def test_reason_codes_sum_to_the_margin_and_read_plainly(engine, telematics):
    rating, base = engine
    rows = base.head(500)
    contributions = telematics.explain(rows)
    np.testing.assert_allclose(contributions.sum(axis=1), telematics.predict_margin(rows), rtol=1e-5, atol=1e-5)
    quotes = rating.quote(rows)
    assert quotes["reason_codes"].map(len).max() == 5
    risky = rows["hard_brake_per_100km_by_vehicle_30d"].idxmax()
    codes = quotes.loc[risky, "reason_codes"]
    braking = [c for c in codes if c.startswith("hard braking")]
    assert braking and "per 100 km, fleet median" in braking[0] and braking[0].endswith(" %") and ": +" in braking[0]
    # the stated percentage is exp(contribution) − 1 of that feature
    effect = np.expm1(contributions.loc[risky, "hard_brake_per_100km_by_vehicle_30d"])
    assert braking[0].endswith(f"+{100 * effect:.0f} %")


def test_reason_codes_skip_missing_values(telematics, book):
    rows = book.head(20).copy()
    rows["hard_brake_per_100km_by_vehicle_30d"] = np.nan
    assert not any(c.startswith("hard braking") for codes in reason_codes(telematics, rows) for c in codes)


def test_live_engine_follows_promotions(tmp_path, engine, telematics, book):
    rating, base = engine
    registry = Registry(tmp_path)
    fingerprint = data_fingerprint(book)
    registry.register("freq", rating.frequency, fingerprint, {})
    registry.register("ubi", telematics, fingerprint, {})
    flat = TelematicsMultiplier(seed=0, bounds=(1.0, 1.0)).fit(book, book["crash_count"], book["exposure_years"])
    registry.register("ubi", flat, fingerprint, {})
    registry.promote("freq", 1)
    registry.promote("ubi", 1)
    live = LiveRatingEngine(registry, "freq", "ubi", frequency_features=("DrivAge",), check_interval_s=0.0)
    assert live.engine().quote(base.head(200))["telematics_multiplier"].std() > 0.05
    registry.promote("ubi", 2)
    assert live.engine().quote(base.head(200))["telematics_multiplier"].eq(1.0).all()
    assert live.versions == {"freq": 1, "ubi": 2}


def test_stream_scorer_serves_the_production_multiplier(tmp_path, telematics, book):
    from pricing.rating import StreamMultiplierScorer
    from stream.score import Scorer as StreamScorer

    registry = Registry(tmp_path)
    registry.register("ubi", telematics, data_fingerprint(book), {})
    registry.promote("ubi", 1)
    scorer = StreamMultiplierScorer(registry, "ubi")
    assert isinstance(scorer, StreamScorer) and scorer.feature_names == list(FEATURES)
    X = book[scorer.feature_names].to_numpy()[:1000]
    np.testing.assert_allclose(scorer.score(X), telematics.multiplier(book.head(1000)), rtol=1e-6)


def test_stream_scores_name_the_model_version_that_made_them(tmp_path, telematics, book):
    """The features worker scores one vehicle, v2 is promoted, the vehicle is scored again
    the same day: the rows name ubi@v1 and ubi@v2 (the scores table's key holds the
    scorer, so the second row joins the first instead of replacing it), each with the
    multiplier of the version it names."""
    import msgspec

    from pricing.rating import StreamMultiplierScorer
    from stream import records as R
    from stream import topics as T
    from stream.featuring import FeatureEngine

    shuffled = book.assign(crash_count=np.random.default_rng(0).permutation(book["crash_count"].to_numpy()))
    challenger = TelematicsMultiplier(seed=0).fit(shuffled, shuffled["crash_count"], shuffled["exposure_years"])
    registry = Registry(tmp_path)
    for model in (telematics, challenger):
        registry.register("ubi", model, data_fingerprint(book), {})
    registry.promote("ubi", 1)
    clock = [2_000_000_000.0]
    engine = FeatureEngine({}, StreamMultiplierScorer(registry, "ubi", check_interval_s=0.0), score_every_ms=0,
                           live_hold_ms=50, live_window_ms=30_000, clock=lambda: clock[0])

    def drive_and_score(first: int) -> tuple[dict, dict]:
        """Ten live samples of one vehicle (one hard brake); its feature row and score row."""
        now_ms = int(clock[0] * 1000)
        recs = [R.DynamicsV1(event_id=f"e{first + i}", ts_ms=now_ms - 1000 + i * 100, speed_kmh=50.0,
                             accel_long_mps2=-4.0 if i == 5 else 0.0, accel_lat_mps2=0.0, yaw_rate_dps=0.0,
                             heading_deg=90.0, motor_power_kw=10.0, adas_state="off", fcw=False, headway_s=None,
                             seatbelt_driver=True, lat=31.2, lon=121.4 + (first + i) * 1e-4) for i in range(10)]
        assert engine.step([(T.clean_name(T.DYNAMICS.name), b"veh-1", msgspec.json.encode(recs))]) == []
        clock[0] += 0.1  # past the live hold
        wanted = ("features.vehicle.v1", "scores.ubi.v1")
        rows = {topic: msgspec.json.decode(v) for topic, _, v in engine.flush() if topic in wanted}
        return rows["features.vehicle.v1"], rows["scores.ubi.v1"]

    features_v1, before = drive_and_score(0)
    registry.promote("ubi", 2)  # e.g. `voltrisk pricing promote ubi 2` while the worker runs
    features_v2, after = drive_and_score(10)
    assert (before["scorer"], after["scorer"]) == ("ubi@v1", "ubi@v2")
    assert (before["vehicle_id"], before["as_of_day"]) == (after["vehicle_id"], after["as_of_day"])
    frame = pd.DataFrame([features_v1, features_v2])[list(FEATURES)]
    served = [telematics.multiplier(frame.iloc[:1])[0], challenger.multiplier(frame.iloc[1:])[0]]
    np.testing.assert_allclose([before["score"], after["score"]], served, rtol=1e-5)
    assert after["score"] != pytest.approx(telematics.multiplier(frame.iloc[1:])[0], rel=1e-3)  # v2's own number


def test_quote_the_simulated_book_with_a_fremtpl2_base_model(telematics):
    """End to end: base premium from freMTPL2 factors × the multiplier, on simulated vehicles."""
    from pricing import fremtpl2
    from pricing.scorers import XGBScorer
    from simulators import book as simulated
    from simulators import drivers

    if not (fremtpl2.PricingSettings().fremtpl2_dir / fremtpl2.FREQ_FILE).exists():
        pytest.skip("freMTPL2 data not found (set VOLTRISK_FREMTPL2_DIR)")
    policies = fremtpl2.load("noll2018").learn.sample(30_000, random_state=0)
    frame = fremtpl2.model_frame(policies)
    params = {"eta": 0.3, "max_depth": 3, "min_child_weight": 20, "max_delta_step": 0.7}
    frequency = XGBScorer(fremtpl2.XGB_FEATURES, fremtpl2.XGB_CATEGORICAL, params=params).fit(frame, frame["ClaimNb"], frame["Exposure"])
    with_claims = frame[frame["ClaimNbSev"] > 0]
    severity = Homogeneous().fit(with_claims, with_claims["ClaimAmount"] / with_claims["ClaimNbSev"], weight=with_claims["ClaimNbSev"])
    cfg = simulated.BookConfig(vehicle_years=300, seed=3)
    vehicles = simulated.vehicle_book(drivers.build_population(cfg.n_vehicles, cfg.seed), cfg)
    quotes = RatingEngine(frequency, telematics, severity).quote(vehicles)
    assert len(quotes) == len(vehicles) and quotes["premium"].notna().all()
    # freMTPL2: ~0.1 claims per year × ~2,000 per claim; the multiplier stays in its bounds
    assert 50 < quotes["base_premium"].median() < 600
    assert quotes["telematics_multiplier"].between(0.6, 1.5).all()
    assert quotes["reason_codes"].map(len).between(0, 5).all() and quotes["reason_codes"].map(len).mean() > 2
