"""freMTPL2 against the published figures; the benchmark and train commands end to end."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pricing import fremtpl2
from pricing.benchmark import PUBLISHED, evaluate, fremtpl2_models
from pricing.cli import app
from pricing.scorers import Homogeneous, PoissonGLM

pytestmark = pytest.mark.skipif(not (fremtpl2.PricingSettings().fremtpl2_dir / fremtpl2.FREQ_FILE).exists(),
                                reason="freMTPL2 data not found (set VOLTRISK_FREMTPL2_DIR)")


@pytest.fixture(scope="module")
def noll():
    return fremtpl2.load("noll2018")


def test_noll_split_preprocessing_matches_the_paper(noll):
    assert (len(noll.learn), len(noll.test)) == (610_212, 67_801)
    assert noll.policies["ClaimNb"].max() == 4 and noll.policies["Exposure"].max() == 1.0
    assert noll.policies["ClaimNb"].sum() == 36_056  # 36,102 before capping 9 policies at 4 claims


def test_glm1_and_null_model_reproduce_noll_salzmann_wuthrich(noll):
    frame = fremtpl2.model_frame(noll.policies)
    learn, test = frame[frame["set"] == "learn"], frame[frame["set"] == "test"]
    models = {k: v for k, v in fremtpl2_models().items() if k != "xgboost"}
    report, _ = evaluate(models, learn, test, "ClaimNb", "Exposure")
    assert report["homogeneous"]["test_poisson_deviance_x100"] == pytest.approx(33.86149, abs=1e-5)
    assert report["homogeneous"]["train_poisson_deviance_x100"] == pytest.approx(32.93518, abs=1e-5)
    assert report["glm"]["test_poisson_deviance_x100"] == pytest.approx(PUBLISHED["noll2018"]["glm"], abs=0.05)
    assert report["glm"]["train_poisson_deviance_x100"] == pytest.approx(31.26738, abs=0.05)
    assert 0.25 < report["glm"]["test_gini"] < 0.30
    calibration = pd.DataFrame(report["glm"]["test_calibration"])
    assert calibration["ratio_observed_expected"].between(0.85, 1.15).all()


def test_wm2023_null_model_reproduces_wuthrich_merz():
    wm = fremtpl2.load("wm2023")
    assert (len(wm.learn), len(wm.test)) == (610_206, 67_801)
    report, _ = evaluate({"homogeneous": Homogeneous()}, wm.learn, wm.test, "ClaimNb", "Exposure")
    assert round(report["homogeneous"]["test_poisson_deviance_x100"], 3) == 25.445
    assert round(report["homogeneous"]["train_poisson_deviance_x100"], 3) == 25.213


def test_glm1_unseen_region_scores_as_the_reference(noll):
    frame = fremtpl2.model_frame(noll.test.head(20))
    glm = PoissonGLM(fremtpl2.GLM1_FEATURES, fremtpl2.GLM1_CATEGORICAL, reference=fremtpl2.GLM1_REFERENCE)
    glm.fit(fremtpl2.model_frame(noll.learn.head(50_000)), noll.learn["ClaimNb"].head(50_000), noll.learn["Exposure"].head(50_000))
    np.testing.assert_allclose(glm.predict_rate(frame.assign(Region="R99")), glm.predict_rate(frame.assign(Region="R24")))


def test_train_command_on_a_policy_csv(tmp_path, noll):
    sample = noll.policies.sample(50_000, random_state=0)[["IDpol", "ClaimNb", "Exposure", "DrivAge", "BonusMalus", "Area", "VehGas"]]
    sample.to_csv(tmp_path / "policies.csv", index=False)
    split = pd.DataFrame({"IDpol": sample["IDpol"], "set": np.where(np.arange(len(sample)) % 5 == 0, "test", "learn")})
    split.to_csv(tmp_path / "split.csv", index=False)
    args = ["train", "--data", str(tmp_path / "policies.csv"), "--target", "ClaimNb", "--exposure", "Exposure",
            "--features", "DrivAge,BonusMalus,Area,VehGas", "--categorical", "Area,VehGas", "--split-file", str(tmp_path / "split.csv"),
            "--models", "homogeneous,glm", "--register", "freq", "--registry-dir", str(tmp_path / "models"), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["n_learn"], out["n_test"]) == (40_000, 10_000)
    for name in ("homogeneous", "glm"):
        assert {"test_poisson_deviance_x100", "train_poisson_deviance_x100", "test_gini", "fit_seconds"} <= set(out["models"][name])
    assert out["models"]["glm"]["test_poisson_deviance_x100"] < out["models"]["homogeneous"]["test_poisson_deviance_x100"]
    assert out["registered"] == {"name": "freq", "version": 1, "model": "glm", "status": "candidate"}


def test_train_command_names_a_missing_column(tmp_path):
    pd.DataFrame({"n": [0, 1], "v": [1.0, 1.0]}).to_csv(tmp_path / "p.csv", index=False)
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "p.csv"), "--target", "n", "--exposure", "v", "--features", "age"])
    assert result.exit_code == 2 and "lacks columns ['age']" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("split", ["noll2018", "wm2023"])
def test_benchmark_command_reaches_the_published_figures(tmp_path, split):
    result = CliRunner().invoke(app, ["benchmark", "fremtpl2", "--split", split, "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    models = json.loads(result.stdout)["models"]
    if split == "noll2018":
        assert models["glm"]["test_poisson_deviance_x100"] == pytest.approx(32.17123, abs=0.05)
        assert models["xgboost"]["test_poisson_deviance_x100"] <= 31.30
    else:
        assert round(models["homogeneous"]["test_poisson_deviance_x100"], 3) == 25.445
    assert (tmp_path / f"fremtpl2_{split}.md").read_text().count("| xgboost |") == 2
