"""`voltrisk pricing …`: benchmark, train, register, promote and list pricing models.

Heavy imports (pandas, xgboost) stay inside the commands so `voltrisk --help` is fast.
JSON goes to stdout as one object; progress goes to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Pricing lab: freMTPL2 benchmark, model training, telematics multiplier, registry and promotion.", no_args_is_help=True)


def _progress(quiet: bool):
    from rich.console import Console

    console = Console(stderr=True)
    return (lambda _msg: None) if quiet else (lambda msg: console.log(msg))


def _registry(registry_dir: Optional[Path]):
    from pricing.registry import Registry
    from pricing.settings import PricingSettings

    return Registry(registry_dir or PricingSettings().model_registry_dir)


def _fail(message: str, code: int = 2):
    """Stop with a one-line error on stderr (no usage box: the message says what to do)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _emit(payload: dict, as_json: bool, markdown: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        typer.echo(markdown)


@app.command()
def benchmark(
    dataset: Annotated[str, typer.Argument(help="Reference dataset; only 'fremtpl2' is known")],
    split: Annotated[str, typer.Option(help="noll2018 (Noll–Salzmann–Wüthrich 90/10) or wm2023 (Wüthrich–Merz)")] = "noll2018",
    data_dir: Annotated[Optional[Path], typer.Option(help="freMTPL2 directory [default: VOLTRISK_FREMTPL2_DIR or ../shared/data/freMTPL2]")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also write <out>/fremtpl2_<split>.json and .md")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the inner validation split and XGBoost")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Reproduce the freMTPL2 comparison: homogeneous, GLM1 and XGBoost frequency (+ gamma severity).

    Example: voltrisk pricing benchmark fremtpl2 --split noll2018 --out bench/pricing
    """
    from pricing.benchmark import markdown_table, run_fremtpl2
    from pricing.fremtpl2 import SPLIT_FILES
    from pricing.settings import PricingSettings

    if dataset != "fremtpl2":
        _fail(f"unknown dataset {dataset!r}; the benchmark knows 'fremtpl2'")
    if split not in SPLIT_FILES:
        _fail(f"unknown split {split!r}; choose one of {sorted(SPLIT_FILES)}")
    result = run_fremtpl2(split, data_dir, seed, PricingSettings().pricing_nthread, _progress(False))
    markdown = markdown_table(result)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"fremtpl2_{split}.json").write_text(json.dumps(result, indent=1) + "\n")
        (out / f"fremtpl2_{split}.md").write_text(markdown)
    _emit(result, as_json, markdown)


def _split_rows(frame, split_file: Optional[Path], test_fraction: float, seed: int):
    """Boolean mask of learn rows, from a split file or a seeded random fraction."""
    import numpy as np
    import pandas as pd

    if split_file is None:
        if not 0 < test_fraction < 1:
            _fail(f"--test-fraction must lie in (0, 1), got {test_fraction}")
        return np.random.default_rng(seed).random(len(frame)) >= test_fraction
    assignment = pd.read_csv(split_file)
    if "set" not in assignment.columns:
        _fail(f"{split_file} has no 'set' column (values learn/test)")
    keys = [c for c in assignment.columns if c in frame.columns]
    if keys:
        merged = frame[keys].merge(assignment[[*keys, "set"]], on=keys, how="left", validate="many_to_one")
        labels = merged["set"].to_numpy()
    elif len(assignment) == len(frame):
        labels = assignment["set"].to_numpy()
    else:
        _fail(f"{split_file} has {len(assignment)} rows and no column shared with the data "
                                 f"({len(frame)} rows): add an id column or one row per data row")
    unknown = ~pd.Series(labels).isin(["learn", "test"]).to_numpy()
    if unknown.any():
        _fail(f"{split_file}: {int(unknown.sum())} data rows have no learn/test label")
    return labels == "learn"


def _names(text: Optional[str]) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Policy-level CSV (one row per policy and period)")],
    target: Annotated[str, typer.Option(help="Claim-count column")],
    exposure: Annotated[str, typer.Option(help="Exposure column (years)")],
    features: Annotated[str, typer.Option(help="Comma-separated feature columns")],
    categorical: Annotated[Optional[str], typer.Option(help="Comma-separated subset of the features that are categorical")] = None,
    split_file: Annotated[Optional[Path], typer.Option(help="CSV with a 'set' column (learn/test), joined on shared id columns or by row")] = None,
    test_fraction: Annotated[float, typer.Option(help="Random test share when no --split-file")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the random split, the inner validation split and XGBoost")] = 0,
    models: Annotated[str, typer.Option(help="Models to fit: any of homogeneous,glm,xgboost")] = "homogeneous,glm,xgboost",
    register: Annotated[Optional[str], typer.Option(help="Register the model with the lowest test deviance under this name (candidate)")] = None,
    registry_dir: Annotated[Optional[Path], typer.Option(help="Registry root [default: VOLTRISK_MODEL_REGISTRY_DIR or .voltrisk/models]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Fit frequency models on any policy table and report Poisson deviance, Gini and calibration.

    Example: voltrisk pricing train --data book.csv --target crash_count --exposure exposure_years --features a,b,c --json
    """
    import pandas as pd

    from pricing.benchmark import evaluate
    from pricing.registry import data_fingerprint
    from pricing.scorers import Homogeneous, PoissonGLM, XGBScorer
    from pricing.settings import PricingSettings

    progress = _progress(False)
    frame = pd.read_csv(data)
    feature_list, categorical_list = _names(features), _names(categorical)
    missing = [c for c in [target, exposure, *feature_list] if c not in frame.columns]
    if missing:
        _fail(f"{data} lacks columns {missing}; it has {list(frame.columns)}")
    nthread = PricingSettings().pricing_nthread
    factories = {
        "homogeneous": lambda: Homogeneous(feature_list, categorical_list, seed),
        "glm": lambda: PoissonGLM(feature_list, categorical_list, seed),
        "xgboost": lambda: XGBScorer(feature_list, categorical_list, seed, nthread=nthread),
    }
    unknown = [m for m in _names(models) if m not in factories]
    if unknown:
        _fail(f"unknown models {unknown}; choose from {sorted(factories)}")
    learn_mask = _split_rows(frame, split_file, test_fraction, seed)
    learn, test = frame[learn_mask], frame[~learn_mask]
    report, fitted = evaluate({m: factories[m]() for m in _names(models)}, learn, test, target, exposure, progress)
    result = {"data": str(data), "target": target, "exposure": exposure, "features": feature_list,
              "categorical": categorical_list, "n_learn": len(learn), "n_test": len(test), "seed": seed, "models": report}
    if register:
        best = min(report, key=lambda m: report[m]["test_poisson_deviance_x100"])
        metrics = {k: v for k, v in report[best].items() if k != "test_calibration"}
        meta = _registry(registry_dir).register(register, fitted[best], data_fingerprint(learn[[target, exposure, *feature_list]]), metrics)
        result["registered"] = {"name": meta.name, "version": meta.version, "model": best, "status": meta.status}
        progress(f"registered {best} as {meta.name} v{meta.version} (candidate)")
    lines = ["| model | test deviance ×100 | train deviance ×100 | test Gini | fit s |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {m} | {r['test_poisson_deviance_x100']:.5f} | {r['train_poisson_deviance_x100']:.5f} | {r['test_gini']:.4f} | "
              f"{r['fit_seconds']:.1f} |" for m, r in report.items()]
    _emit(result, as_json, "\n".join(lines))


@app.command()
def telematics(
    book: Annotated[Optional[Path], typer.Option(help="Vehicle book (parquet or csv, contract columns); default: simulate one")] = None,
    vehicle_years: Annotated[float, typer.Option(help="Size of the simulated book when no --book")] = 20_000.0,
    seed: Annotated[int, typer.Option(help="Seed of the simulated book, the vehicle split and XGBoost")] = 7,
    register: Annotated[Optional[str], typer.Option(help="Register the fitted multiplier under this name (candidate)")] = None,
    registry_dir: Annotated[Optional[Path], typer.Option(help="Registry root [default: VOLTRISK_MODEL_REGISTRY_DIR or .voltrisk/models]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Train the telematics multiplier on the simulated book; compare it with the reference score and the true risk.

    Example: voltrisk pricing telematics --vehicle-years 20000 --register ubi-telematics --json
    """
    import pandas as pd

    from pricing.registry import data_fingerprint
    from pricing.settings import PricingSettings
    from pricing.telematics import evaluate_on_book

    progress = _progress(False)
    if book is not None:
        frame = pd.read_parquet(book) if book.suffix == ".parquet" else pd.read_csv(book)
    else:
        from simulators import book as simulated
        from simulators import drivers

        progress(f"simulating a book of {vehicle_years:,.0f} vehicle-years (seed {seed})")
        cfg = simulated.BookConfig(vehicle_years=vehicle_years, seed=seed)
        frame = simulated.vehicle_book(drivers.build_population(cfg.n_vehicles, cfg.seed), cfg)
    progress(f"fitting the telematics multiplier on {len(frame):,} vehicle-periods")
    try:
        report, model = evaluate_on_book(frame, seed, nthread=PricingSettings().pricing_nthread)
    except KeyError as exc:
        _fail(exc.args[0])
    result = {"book": str(book) if book else f"simulated:{vehicle_years:g}vy:seed{seed}", **report}
    if register:
        metrics = {"test_poisson_deviance_x100": report["test_poisson_deviance_x100"]["telematics"],
                   "spearman_vs_true_rate": report["ranking_vs_true_rate"]["telematics"]["spearman_vs_true_rate"]}
        meta = _registry(registry_dir).register(register, model, data_fingerprint(frame), metrics)
        result["registered"] = {"name": meta.name, "version": meta.version, "status": meta.status}
    dev, rank = report["test_poisson_deviance_x100"], report["ranking_vs_true_rate"]
    lines = ["| score | test deviance ×100 | Spearman vs true rate | Gini of true crashes |", "| --- | ---: | ---: | ---: |",
             f"| homogeneous | {dev['homogeneous']:.4f} | – | 0 |"]
    lines += [f"| {name} | {dev.get(name, float('nan')):.4f} | {r['spearman_vs_true_rate']:.4f} | {r['gini_of_true_expected_crashes']:.4f} |"
              for name, r in rank.items()]
    lines.append(f"| true rate (ceiling) | {dev['true_rate']:.4f} | 1 | {rank['telematics']['gini_ceiling_true_rate']:.4f} |")
    _emit(result, as_json, "\n".join(lines))


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Model name in the registry")],
    version: Annotated[int, typer.Argument(help="Version to put in production")],
    registry_dir: Annotated[Optional[Path], typer.Option(help="Registry root [default: VOLTRISK_MODEL_REGISTRY_DIR or .voltrisk/models]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """Put a registered model version in production; the previous one is retired. Workers reload it.

    Example: voltrisk pricing promote ubi-telematics 3
    """
    from dataclasses import asdict

    from voltrisk.settings import WorkerSettings

    served = {}
    if name == WorkerSettings().worker_scorer:  # the stream's model: it must fit what the workers feed it
        from pricing.telematics import LABELS, TelematicsMultiplier

        served = {"expected_features": list(LABELS), "kind": TelematicsMultiplier.kind}
    try:
        meta = _registry(registry_dir).promote(name, version, **served)
    except (KeyError, ValueError) as exc:
        _fail(exc.args[0], code=1)
    _emit(asdict(meta), as_json, f"{meta.name} v{meta.version} is now in production")


@app.command("models")
def list_models(
    registry_dir: Annotated[Optional[Path], typer.Option(help="Registry root [default: VOLTRISK_MODEL_REGISTRY_DIR or .voltrisk/models]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")] = False,
) -> None:
    """List registered models with status, features, fingerprint and test deviance.

    Example: voltrisk pricing models --json
    """
    from dataclasses import asdict

    rows = _registry(registry_dir).models()
    lines = ["| name | version | status | kind | test deviance ×100 | features | data |", "| --- | ---: | --- | --- | ---: | ---: | --- |"]
    lines += [f"| {m.name} | {m.version} | {m.status} | {m.kind} | {m.metrics.get('test_poisson_deviance_x100', float('nan')):.5f} | "
              f"{len(m.features)} | {m.data_fingerprint} |" for m in rows]
    _emit({"models": [asdict(m) for m in rows]}, as_json, "\n".join(lines) if rows else "no models registered")
