"""Registry: versions, promotion, hot reload in a running loader, refusal of mismatched features."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pricing.cli import app
from pricing.registry import FeatureMismatchError, ProductionModel, Registry, data_fingerprint
from pricing.telematics import FEATURES, TelematicsMultiplier
from pricing.testing import synthetic_book


@pytest.fixture(scope="module")
def two_models():
    """Two telematics models that disagree: one fitted on the book, one on a book with shuffled crashes."""
    book = synthetic_book(3000, seed=21)
    good = TelematicsMultiplier(seed=0).fit(book, book["crash_count"], book["exposure_years"])
    shuffled = book.assign(crash_count=np.random.default_rng(0).permutation(book["crash_count"].to_numpy()))
    other = TelematicsMultiplier(seed=0).fit(shuffled, shuffled["crash_count"], shuffled["exposure_years"])
    return book, good, other


def test_register_promote_retire(tmp_path, two_models):
    book, good, other = two_models
    registry = Registry(tmp_path)
    v1 = registry.register("ubi", good, data_fingerprint(book), {"test_poisson_deviance_x100": 50.0})
    v2 = registry.register("ubi", other, data_fingerprint(book), {"test_poisson_deviance_x100": 55.0})
    assert (v1.version, v2.version, v1.status) == (1, 2, "candidate")
    assert registry.meta("ubi", 1).data_fingerprint.startswith("3000:")
    registry.promote("ubi", 1)
    registry.promote("ubi", 2)
    assert [(m.version, m.status) for m in registry.models()] == [(1, "retired"), (2, "production")]
    assert registry.production_version("ubi") == 2
    with pytest.raises(ValueError, match="retired"):
        registry.promote("ubi", 1)
    with pytest.raises(KeyError, match=r"versions of ubi: \[1, 2\]"):
        registry.meta("ubi", 9)


def test_worker_hot_reloads_a_newly_promoted_model(tmp_path, two_models):
    book, good, other = two_models
    registry = Registry(tmp_path)
    registry.register("ubi", good, data_fingerprint(book), {})
    registry.register("ubi", other, data_fingerprint(book), {})
    registry.promote("ubi", 1)
    live = ProductionModel(registry, "ubi", FEATURES, check_interval_s=0.0)
    rows = book.head(100)
    before = live.get().predict_rate(rows)
    np.testing.assert_allclose(before, good.predict_rate(rows), rtol=1e-6)
    assert live.version == 1
    registry.promote("ubi", 2)  # e.g. `voltrisk pricing promote ubi 2` from another process
    after = live.get().predict_rate(rows)
    assert live.version == 2
    np.testing.assert_allclose(after, other.predict_rate(rows), rtol=1e-6)
    assert np.abs(after - before).max() > 0.01


def test_model_with_other_features_is_refused(tmp_path, two_models):
    book, good, _ = two_models
    registry = Registry(tmp_path)
    registry.register("ubi", good, data_fingerprint(book), {})
    registry.promote("ubi", 1)
    stream_features = [f for f in FEATURES if f != "night_share_by_vehicle_30d"] + ["night_share_by_vehicle_7d"]
    with pytest.raises(FeatureMismatchError, match=r"lacks: \['night_share_by_vehicle_30d'\].*does not use: \['night_share_by_vehicle_7d'\]"):
        ProductionModel(registry, "ubi", stream_features).get()


def test_mismatched_promotion_keeps_the_running_model(tmp_path, two_models):
    book, good, _ = two_models
    registry = Registry(tmp_path)
    registry.register("ubi", good, data_fingerprint(book), {})
    registry.promote("ubi", 1)
    narrow = TelematicsMultiplier(FEATURES[:5], seed=0).fit(book, book["crash_count"], book["exposure_years"])
    registry.register("ubi", narrow, data_fingerprint(book), {})
    live = ProductionModel(registry, "ubi", FEATURES, check_interval_s=0.0)
    live.get()
    registry.promote("ubi", 2)
    assert live.get() is not None and live.version == 1
    assert "trained on features" in live.last_error


def test_cli_promote_and_models(tmp_path, two_models):
    book, good, _ = two_models
    Registry(tmp_path).register("ubi", good, data_fingerprint(book), {"test_poisson_deviance_x100": 42.5})
    runner = CliRunner()
    promoted = runner.invoke(app, ["promote", "ubi", "1", "--registry-dir", str(tmp_path), "--json"])
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["status"] == "production"
    listed = json.loads(runner.invoke(app, ["models", "--registry-dir", str(tmp_path), "--json"]).stdout)
    assert [(m["name"], m["version"], m["status"], m["metrics"]["test_poisson_deviance_x100"]) for m in listed["models"]] == [
        ("ubi", 1, "production", 42.5)]
    missing = runner.invoke(app, ["promote", "ubi", "7", "--registry-dir", str(tmp_path)])
    assert missing.exit_code == 1 and "no model ubi v7" in missing.stderr


def test_a_promotion_that_does_not_fit_its_consumers_is_refused_before_anything_changes(tmp_path, two_models):
    """Promoted, a version with other features or of another kind would leave the running
    workers on the retired version (with nothing saying so) and stop the next one at start."""
    from pricing.scorers import Homogeneous

    book, good, _ = two_models
    registry = Registry(tmp_path)
    registry.register("ubi", good, data_fingerprint(book), {})
    registry.promote("ubi", 1, expected_features=FEATURES, kind="telematics")
    narrow = TelematicsMultiplier(FEATURES[:5], seed=0).fit(book, book["crash_count"], book["exposure_years"])
    registry.register("ubi", narrow, data_fingerprint(book), {})
    flat = Homogeneous(FEATURES).fit(book, book["crash_count"], book["exposure_years"])
    registry.register("ubi", flat, data_fingerprint(book), {})
    with pytest.raises(FeatureMismatchError, match="trained on features"):
        registry.promote("ubi", 2, expected_features=FEATURES, kind="telematics")
    with pytest.raises(ValueError, match="is a homogeneous model; its consumers need a telematics model"):
        registry.promote("ubi", 3, expected_features=FEATURES, kind="telematics")
    assert registry.production_version("ubi") == 1
    assert [(m.version, m.status) for m in registry.models()] == [(1, "production"), (2, "candidate"), (3, "candidate")]
    from voltrisk.settings import WorkerSettings

    served = WorkerSettings().worker_scorer  # the stream's model: the CLI checks what the workers feed it
    registry.register(served, narrow, data_fingerprint(book), {})
    refused = CliRunner().invoke(app, ["promote", served, "1", "--registry-dir", str(tmp_path)])
    assert refused.exit_code == 1 and "trained on features" in refused.output, refused.output
    assert registry.production_version(served) is None


def test_a_promoted_model_of_another_kind_keeps_the_running_one(tmp_path, two_models):
    from pricing.scorers import Homogeneous

    book, good, _ = two_models
    registry = Registry(tmp_path)
    registry.register("ubi", good, data_fingerprint(book), {})
    registry.register("ubi", Homogeneous(FEATURES).fit(book, book["crash_count"], book["exposure_years"]),
                      data_fingerprint(book), {})
    registry.promote("ubi", 1)
    live = ProductionModel(registry, "ubi", FEATURES, check_interval_s=0.0, kind="telematics")
    live.get()
    registry.promote("ubi", 2)  # promoted without the checks (another tool, an older CLI)
    assert live.get() is not None and live.version == 1
    assert "is a homogeneous model, not a telematics one" in live.last_error
    with pytest.raises(FeatureMismatchError, match="homogeneous"):
        ProductionModel(registry, "ubi", FEATURES, kind="telematics").get()  # a worker starting now says why
