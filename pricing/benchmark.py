"""Fit and judge frequency models on a learn/test partition; the freMTPL2 benchmark.

``evaluate`` is shared by ``voltrisk pricing benchmark`` and ``voltrisk pricing train``:
each model is fitted on the learn rows only and reported with test and train Poisson
deviance ×100, exposure-weighted Gini and calibration by decile on the test rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pricing import fremtpl2
from pricing.metrics import calibration_by_decile, gini_exposure_weighted, poisson_deviance_x100
from pricing.scorers import Homogeneous, PoissonGLM, Scorer, XGBScorer

# Published figures (Noll–Salzmann–Wüthrich 2020; Wüthrich–Merz 2023), DESIGN §6.
PUBLISHED: dict[str, dict[str, float]] = {
    "noll2018": {"homogeneous": 33.86149, "glm": 32.17123, "xgboost": 31.29794},
    "wm2023": {"homogeneous": 25.445},
}


def score_frequency(scorer: Scorer, test: pd.DataFrame, y: np.ndarray, exposure: np.ndarray) -> dict[str, Any]:
    """Test metrics of a fitted frequency scorer."""
    rate = scorer.predict_rate(test)
    return {
        "test_poisson_deviance_x100": poisson_deviance_x100(y, rate * exposure),
        "test_gini": gini_exposure_weighted(y, rate, exposure),
        "test_calibration": calibration_by_decile(y, rate, exposure).round(6).to_dict("records"),
    }


def evaluate(
    models: Mapping[str, Scorer],
    learn: pd.DataFrame,
    test: pd.DataFrame,
    target: str,
    exposure: str,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Scorer]]:
    """Fit every model on ``learn`` and report it on ``test``; returns (report, fitted models)."""
    y_learn, v_learn = learn[target].to_numpy(float), learn[exposure].to_numpy(float)
    y_test, v_test = test[target].to_numpy(float), test[exposure].to_numpy(float)
    report: dict[str, dict[str, Any]] = {}
    for name, scorer in models.items():
        progress(f"fitting {name} on {len(learn):,} rows")
        start = time.perf_counter()
        scorer.fit(learn, y_learn, v_learn)
        fit_seconds = time.perf_counter() - start
        entry = {
            "train_poisson_deviance_x100": poisson_deviance_x100(y_learn, scorer.predict(learn, v_learn)),
            **score_frequency(scorer, test, y_test, v_test),
            "fit_seconds": round(fit_seconds, 2),
        }
        if isinstance(scorer, XGBScorer):
            entry["n_rounds"] = scorer.best_iteration + 1
        report[name] = entry
        progress(f"{name}: test deviance ×100 {entry['test_poisson_deviance_x100']:.5f}")
    return report, dict(models)


def fremtpl2_models(seed: int = 0, nthread: int = 2) -> dict[str, Scorer]:
    """The three benchmark frequency models on their own feature sets."""
    return {
        "homogeneous": Homogeneous(),
        "glm": PoissonGLM(fremtpl2.GLM1_FEATURES, fremtpl2.GLM1_CATEGORICAL, seed, reference=fremtpl2.GLM1_REFERENCE),
        "xgboost": XGBScorer(fremtpl2.XGB_FEATURES, fremtpl2.XGB_CATEGORICAL, seed, nthread=nthread),
    }


def severity_report(learn: pd.DataFrame, test: pd.DataFrame, frequency: Scorer, seed: int, nthread: int) -> dict[str, Any]:
    """Gamma severity on policies with claim amounts, and the pure premium freq × sev on test."""
    with_claims = learn[learn["ClaimNbSev"] > 0]
    severity = XGBScorer(fremtpl2.XGB_FEATURES, fremtpl2.XGB_CATEGORICAL, seed, objective="reg:gamma", nthread=nthread)
    start = time.perf_counter()
    severity.fit(with_claims, with_claims["ClaimAmount"] / with_claims["ClaimNbSev"], weight=with_claims["ClaimNbSev"])
    fit_seconds = time.perf_counter() - start
    test_claims = test[test["ClaimNbSev"] > 0]
    observed_mean = test_claims["ClaimAmount"].sum() / test_claims["ClaimNbSev"].sum()
    predicted_mean = np.average(severity.predict_rate(test_claims), weights=test_claims["ClaimNbSev"])
    pure_premium = frequency.predict(test, test["Exposure"]) * severity.predict_rate(test)
    return {
        "n_claims_learn": int(with_claims["ClaimNbSev"].sum()),
        "n_rounds": severity.best_iteration + 1,
        "fit_seconds": round(fit_seconds, 2),
        "test_mean_claim_amount_observed": round(float(observed_mean), 2),
        "test_mean_claim_amount_predicted": round(float(predicted_mean), 2),
        "test_pure_premium_total_observed": round(float(test["ClaimAmount"].sum()), 2),
        "test_pure_premium_total_predicted": round(float(pure_premium.sum()), 2),
        "test_pure_premium_gini": gini_exposure_weighted(
            test["ClaimAmount"].to_numpy(float), pure_premium / test["Exposure"].to_numpy(float), test["Exposure"].to_numpy(float)
        ),
    }


def run_fremtpl2(split: fremtpl2.Split, data_dir: Path | None = None, seed: int = 0, nthread: int = 2,
                 progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """The freMTPL2 comparison: homogeneous, GLM1, XGBoost frequency (+ severity, pure premium)."""
    portfolio = fremtpl2.load(split, data_dir)
    frame = fremtpl2.model_frame(portfolio.policies)
    learn, test = frame[frame["set"] == "learn"], frame[frame["set"] == "test"]
    models, fitted = evaluate(fremtpl2_models(seed, nthread), learn, test, "ClaimNb", "Exposure", progress)
    progress("fitting gamma severity")
    return {
        "split": split,
        "n_learn": len(learn),
        "n_test": len(test),
        "seed": seed,
        "models": models,
        "published_test_poisson_deviance_x100": PUBLISHED.get(split, {}),
        "severity": severity_report(learn, test, fitted["xgboost"], seed, nthread),
    }


def markdown_table(result: Mapping[str, Any]) -> str:
    """The comparison as Markdown: one row per model, then calibration by decile per model."""
    published = result.get("published_test_poisson_deviance_x100", {})
    lines = [
        f"### freMTPL2, split `{result['split']}` ({result['n_learn']:,} learn / {result['n_test']:,} test)",
        "",
        "| model | test deviance ×100 | published | train deviance ×100 | test Gini | fit s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in result["models"].items():
        pub = f"{published[name]:.5f}" if name in published else "–"
        lines.append(f"| {name} | {m['test_poisson_deviance_x100']:.5f} | {pub} | {m['train_poisson_deviance_x100']:.5f} | "
                     f"{m['test_gini']:.4f} | {m['fit_seconds']:.1f} |")
    lines += ["", "Calibration on test (observed / expected claims by exposure-weighted decile of predicted rate):", "",
              "| model | " + " | ".join(f"d{d}" for d in range(1, 11)) + " |", "| --- |" + " ---: |" * 10]
    for name, m in result["models"].items():
        ratios = [f"{row['ratio_observed_expected']:.2f}" for row in m["test_calibration"]]
        lines.append(f"| {name} | " + " | ".join(ratios) + " |")
    if "severity" in result:
        s = result["severity"]
        lines += ["", f"Severity (XGBoost gamma, {s['n_claims_learn']:,} learn claims, {s['n_rounds']} rounds): test mean claim "
                      f"{s['test_mean_claim_amount_observed']:,.0f} observed vs {s['test_mean_claim_amount_predicted']:,.0f} predicted; "
                      f"pure premium (freq × sev) total {s['test_pure_premium_total_observed']:,.0f} observed vs "
                      f"{s['test_pure_premium_total_predicted']:,.0f} predicted, Gini {s['test_pure_premium_gini']:.4f}."]
    return "\n".join(lines) + "\n"
