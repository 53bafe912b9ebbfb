"""Contract test: every scorer honours fit / predict / explain, is seeded, tolerates bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from pricing.scorers import Homogeneous, PoissonGLM, XGBScorer, scorer_from_state
from pricing.telematics import FEATURES as TELEMATICS_FEATURES, TelematicsMultiplier
from pricing.testing import synthetic_book


def policy_frame(n: int, seed: int) -> pd.DataFrame:
    """Policies with two numerics and a categorical, claims drawn from a known rate."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.integers(18, 90, n).astype(float),
        "power": rng.integers(4, 15, n).astype(float),
        "region": rng.choice(["north", "south", "east"], n),
        "exposure": rng.uniform(0.2, 1.0, n),
    })
    rate = 0.1 * np.exp(-0.015 * (frame["age"] - 40) + 0.05 * frame["power"] + frame["region"].map({"north": 0.0, "south": 0.4, "east": -0.3}))
    frame["claims"] = rng.poisson(rate * frame["exposure"])
    frame["amount"] = rng.gamma(2.0, 1000.0 * (1 + frame["power"] / 10))
    return frame


FEATURES, CATEGORICAL = ("age", "power", "region"), ("region",)
FAST = {"eta": 0.3, "max_depth": 3, "min_child_weight": 5}  # small data: fewer, bigger boosting steps keep tests quick


def fit_case(kind: str, seed: int = 7):
    """(fitted scorer, frame it scores) for each kind of scorer."""
    if kind == "telematics":
        book = synthetic_book(3000, seed=1)
        return TelematicsMultiplier(seed=seed).fit(book, book["crash_count"], book["exposure_years"]), book.head(200)
    frame = policy_frame(4000, seed=2)
    if kind == "severity":
        with_amount = frame.assign(n=np.maximum(frame["claims"], 1))
        scorer = XGBScorer(FEATURES, CATEGORICAL, seed, objective="reg:gamma", params=FAST)
        return scorer.fit(with_amount, with_amount["amount"], weight=with_amount["n"]), frame.head(200)
    scorer = {"homogeneous": Homogeneous(FEATURES, CATEGORICAL, seed), "glm": PoissonGLM(FEATURES, CATEGORICAL, seed),
              "xgboost": XGBScorer(FEATURES, CATEGORICAL, seed, params=FAST)}[kind]
    return scorer.fit(frame, frame["claims"], frame["exposure"]), frame.head(200)


KINDS = ["homogeneous", "glm", "xgboost", "severity", "telematics"]


@pytest.fixture(scope="module", params=KINDS)
def case(request):
    return request.param, *fit_case(request.param)


def test_explain_rows_sum_to_the_log_rate(case):
    _, scorer, frame = case
    contributions = scorer.explain(frame)
    assert list(contributions.columns) == [*scorer.features, "bias"]
    np.testing.assert_allclose(contributions.sum(axis=1), np.log(scorer.predict_rate(frame)), rtol=1e-5, atol=1e-5)


def test_predict_scales_the_rate_by_exposure(case):
    _, scorer, frame = case
    exposure = np.linspace(0.1, 1.0, len(frame))
    np.testing.assert_allclose(scorer.predict(frame, exposure), scorer.predict_rate(frame) * exposure, rtol=1e-6)
    assert np.all(scorer.predict_rate(frame) > 0)


def test_same_seed_same_model(case):
    kind, scorer, frame = case
    again, _ = fit_case(kind)
    np.testing.assert_array_equal(again.predict_rate(frame), scorer.predict_rate(frame))


def test_state_round_trips_through_json(case):
    _, scorer, frame = case
    restored = scorer_from_state(json.loads(json.dumps(scorer.to_state())))
    np.testing.assert_allclose(restored.predict_rate(frame), scorer.predict_rate(frame), rtol=1e-6)


def test_missing_values_and_unseen_categories_score(case):
    kind, scorer, frame = case
    broken = frame.copy()
    numeric = [c for c in scorer.features if c not in scorer.categorical]
    broken.loc[broken.index[:50], numeric[0]] = np.nan
    for col in scorer.categorical:
        broken[col] = broken[col].astype(object)
        broken.loc[broken.index[50:100], col] = "never-seen-before"
        broken.loc[broken.index[100:150], col] = None
    rate = scorer.predict_rate(broken)
    assert np.all(np.isfinite(rate)) and np.all(rate > 0)
    if kind == "glm":  # an unseen level scores as the reference level
        ref = broken.iloc[50:100].assign(region=scorer.reference["region"])
        np.testing.assert_allclose(scorer.predict_rate(broken.iloc[50:100]), scorer.predict_rate(ref))


def test_missing_feature_column_is_named():
    scorer, frame = fit_case("glm")
    with pytest.raises(KeyError, match=r"\['power'\]"):
        scorer.predict_rate(frame.drop(columns=["power"]))


def test_glm_and_xgboost_recover_the_true_effects():
    frame = policy_frame(40_000, seed=5)
    glm = PoissonGLM(FEATURES, CATEGORICAL).fit(frame, frame["claims"], frame["exposure"])
    assert glm.coef["age"] == pytest.approx(-0.015, abs=0.003)
    assert glm.coef["power"] == pytest.approx(0.05, abs=0.01)
    assert glm.coef.get("region=south", 0.0) - glm.coef.get("region=north", 0.0) == pytest.approx(0.4, abs=0.08)
    xgb = XGBScorer(FEATURES, CATEGORICAL, params=FAST).fit(frame, frame["claims"], frame["exposure"])
    np.testing.assert_allclose(xgb.predict(frame, frame["exposure"]).sum(), frame["claims"].sum(), rtol=1e-4)


def test_telematics_recovers_the_true_ranking_and_respects_monotonicity():
    from pricing.telematics import ranking_against_truth

    book = synthetic_book(8000, seed=11)
    model = TelematicsMultiplier(seed=0).fit(book, book["crash_count"], book["exposure_years"])
    holdout = synthetic_book(4000, seed=12)
    ranking = ranking_against_truth(holdout, model.predict_rate(holdout))
    assert ranking["spearman_vs_true_rate"] > 0.85
    assert ranking["gini_of_true_expected_crashes"] > 0.85 * ranking["gini_ceiling_true_rate"]
    # more hard braking never lowers the rate, whatever the rest of the profile
    sweep = pd.concat([holdout.head(50)] * 20, ignore_index=True)
    sweep["hard_brake_per_100km_by_vehicle_30d"] = np.repeat(np.linspace(0, 8, 20), 50)
    rates = model.predict_rate(sweep).reshape(20, 50)
    assert np.all(np.diff(rates, axis=0) >= 0)
    assert set(model.features) == set(TELEMATICS_FEATURES)


@pytest.mark.parametrize("kind", ["glm", "xgboost"])
def test_integer_coded_categories_are_levels(kind):
    frame = policy_frame(4000, seed=2)
    coded = frame.assign(region=frame["region"].map({"north": 1, "south": 2, "east": 3}))
    scorer = PoissonGLM(FEATURES, CATEGORICAL) if kind == "glm" else XGBScorer(FEATURES, CATEGORICAL, params=FAST)
    scorer.fit(coded, coded["claims"], coded["exposure"])
    named = PoissonGLM(FEATURES, CATEGORICAL) if kind == "glm" else XGBScorer(FEATURES, CATEGORICAL, params=FAST)
    named.fit(frame, frame["claims"], frame["exposure"])
    np.testing.assert_allclose(scorer.predict_rate(coded.head(300)), named.predict_rate(frame.head(300)), rtol=1e-4)
