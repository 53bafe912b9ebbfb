"""`voltrisk fraud ...`: train, score and evaluate the fraud-ring classifier on any
claims table (CSV or Parquet) with entity columns."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer
from rich.console import Console

from voltrisk.errors import UserError

app = typer.Typer(help="Fraud rings: entity graph, telematics verification, ring scoring.", no_args_is_help=True)
err = Console(stderr=True)

# claims-book entity columns (shared contract with the simulators)
BOOK_ENTITY_COLS = (
    "insured_name,insured_phone,insured_address,insured_bank_account,insured_vehicle_id,"
    "third_party_name,third_party_phone,third_party_address,third_party_bank_account,third_party_vehicle_id,"
    "garage,tow_company,lawyer,clinic"
)


def _read(path: Path, entity_cols: list[str]) -> list[dict]:
    import pandas as pd

    if not path.exists():
        raise UserError(f"--claims: {path} does not exist")
    if path.suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
        for c in entity_cols:
            if c in df.columns:
                df[c] = df[c].astype("string").fillna("")
        # nullable columns (Parquet booleans) hold pd.NA, which has no truth value: make it None
        df = df.astype(object).where(df.notna(), None)
    else:
        # entity columns as text: a phone read as a number loses its "+86" and leading zeros
        df = pd.read_csv(path, dtype={c: str for c in entity_cols}, keep_default_na=False, na_values={"": None})
        for c in entity_cols:
            if c in df.columns:
                df[c] = df[c].fillna("")
    return df.to_dict("records")


def _spec(records: list[dict], entity_cols: list[str], time_col: str | None, id_col: str):
    from fraudring.features import TableSpec

    if not records:
        raise UserError("--claims: the claims table has no rows")
    cols = records[0].keys()
    missing = [c for c in entity_cols if c not in cols]
    if missing:
        raise UserError(f"--entity-cols: no column(s) {', '.join(missing)} in the claims table; columns: {', '.join(cols)}")
    if id_col not in cols:
        for i, r in enumerate(records):
            r[id_col] = str(i)
    if time_col is None:
        time_col = "ts_ms" if "ts_ms" in cols else "_row"
        if time_col == "_row":
            err.print("[yellow]no --time-col and no ts_ms column: the hold-out is the last rows in file order[/]")
            for i, r in enumerate(records):
                r["_row"] = i
    elif time_col not in cols:
        raise UserError(f"--time-col: no column {time_col!r} in the claims table")
    else:
        import pandas as pd

        for r in records:  # dates become epoch ms so any time column works
            v = r[time_col]
            if not isinstance(v, (int, float)):
                r[time_col] = int(pd.Timestamp(v).value // 1_000_000)
    return TableSpec(
        entity_cols=tuple(entity_cols), id_col=id_col, time_col=time_col,
        loss_col="loss_ts_ms" if "loss_ts_ms" in cols else None,
        amount_col="amount_eur" if "amount_eur" in cols else None,
    )


def _clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else round(v, 6) if isinstance(v, float) else v)
            for k, v in d.items()}


def _print_metrics(metrics: dict, title: str) -> None:
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in _clean(metrics).items():
        t.add_row(k, "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
    err.print(t)


def _cols(entity_cols: str) -> list[str]:
    cols = [c.strip() for c in entity_cols.split(",") if c.strip()]
    if not cols:
        raise UserError("--entity-cols: give at least one entity column")
    return cols


@app.command()
def train(
    claims: Path = typer.Option(..., help="Claims table, CSV or Parquet, one row per claim"),
    label: str = typer.Option(..., help="0/1 fraud label column"),
    entity_cols: str = typer.Option(..., help="Comma-separated entity columns (names, phones, addresses, ...)"),
    time_col: str | None = typer.Option(None, help="Report-time column (epoch ms or a date); default ts_ms"),
    id_col: str = typer.Option("claim_id", help="Claim id column (row number when absent)"),
    model_out: Path = typer.Option(Path(".voltrisk/fraud/fraud_model.json"), help="Where to write the model"),
    test_share: float = typer.Option(0.3, min=0.05, max=0.9, help="Latest share of claims held out"),
    seed: int = typer.Option(7),
    as_json: bool = typer.Option(False, "--json", help="One JSON object of metrics on stdout"),
) -> None:
    """Train the classifier on a claims table, report hold-out metrics, save the model.

    Example: voltrisk fraud train --claims claims.csv --label is_fraud --entity-cols insured_phone,insured_address,garage --json
    """
    from fraudring.evaluate import train_and_evaluate

    cols = _cols(entity_cols)
    records = _read(claims, cols)
    spec = _spec(records, cols, time_col, id_col)
    with err.status(f"building the entity graph and training on {len(records):,} claims"):
        try:
            run = train_and_evaluate(records, spec, label, test_share=test_share, seed=seed)
        except ValueError as exc:
            raise UserError("--claims: " + str(exc)) from exc
    model_out.parent.mkdir(parents=True, exist_ok=True)
    run.model.save(model_out)
    err.print(f"model written to {model_out}")
    if as_json:
        print(json.dumps(_clean(run.metrics)))
    else:
        _print_metrics(run.metrics, f"hold-out metrics ({claims.name})")


@app.command()
def score(
    claims: Path = typer.Option(..., help="Claims table, CSV or Parquet"),
    model: Path = typer.Option(..., help="Model written by `voltrisk fraud train`"),
    out: Path | None = typer.Option(None, help="CSV to write (default: stdout)"),
) -> None:
    """Score every claim: fraud probability, ring id, size, score and alert, expected saving, top-3 reasons.

    Example: voltrisk fraud score --claims claims.csv --model .voltrisk/fraud/fraud_model.json --out scored.csv
    """
    import pandas as pd

    from fraudring.features import TableSpec, table_features
    from fraudring.model import FraudModel, reasons

    try:
        fm = FraudModel.load(model)
    except ValueError as exc:
        raise UserError("--model: " + str(exc)) from exc
    saved = fm.meta["spec"]
    records = _read(claims, saved["entity_cols"])
    spec = _spec(records, saved["entity_cols"], saved["time_col"] if saved["time_col"] != "_row" else None,
                 saved["id_col"])
    spec = TableSpec(**{**spec.__dict__, "use_facts": saved.get("use_facts", True)})
    table = table_features(records, spec)
    p = fm.predict(table.rows)
    why = reasons(fm, table.rows)
    df = pd.DataFrame({
        "claim_id": table.claim_ids, "score": p.round(4), "ring_id": table.ring_ids,
        "expected_saving_eur": (p * pd.Series(table.amount_eur).to_numpy()).round(2),
        **{f"reason_{k + 1}": [w[k]["text"] if len(w) > k else "" for w in why] for k in range(3)},
    })
    ring = df.groupby("ring_id")["score"]
    df.insert(3, "ring_claims", ring.transform("size"))
    df.insert(4, "ring_score", ring.transform("mean").round(4))
    # the evaluation's ring-alert rule: >= 3 claims scoring >= 0.5 on average
    df.insert(5, "ring_alert", (df["ring_claims"] >= 3) & (df["ring_score"] >= 0.5))
    df = df.sort_values("expected_saving_eur", ascending=False)
    df.to_csv(out if out is not None else sys.stdout, index=False)
    if out is not None:
        err.print(f"{len(df):,} claims scored, {int((p >= 0.5).sum()):,} with p >= 0.5, "
                  f"{df.loc[df['ring_alert'], 'ring_id'].nunique():,} ring alerts; written to {out}")


@app.command()
def evaluate(
    claims: Path = typer.Option(..., help="Simulated claims book (claims-book columns, with is_fraud and ring_id)"),
    queue_pct: float = typer.Option(5.0, min=0.1, max=100, help="Queue size: top % of hold-out claims by expected saving"),
    test_share: float = typer.Option(0.3, min=0.05, max=0.9),
    seed: int = typer.Option(7),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout"),
) -> None:
    """Judge the classifier on a simulated book: claim metrics, ring recall/precision of the top-k queue, ablation.

    Example: voltrisk fraud evaluate --claims .voltrisk/book/claims.parquet --json
    """
    from fraudring.evaluate import replay_latency, train_and_evaluate
    from fraudring.features import table_features
    from fraudring.model import time_split

    cols = _cols(BOOK_ENTITY_COLS)
    records = _read(claims, cols)
    spec = _spec(records, cols, "ts_ms", "claim_id")
    for col in ("is_fraud", "ring_id"):
        if col not in records[0]:
            raise UserError(f"--claims: {claims} has no {col!r} column: evaluate needs a simulated book with ground truth")
    split_ms = time_split([int(r["ts_ms"]) for r in records], test_share)
    with err.status(f"building the entity graph over {len(records):,} claims"):
        table = table_features(records, spec, snapshot_ms=[split_ms])
    ablation = {}
    runs = {}
    for fs in ("graph", "telematics", "both"):
        with err.status(f"training and scoring: {fs} features"):
            runs[fs] = train_and_evaluate(records, spec, "is_fraud", feature_set=fs, test_share=test_share,
                                          seed=seed, ring_col="ring_id", queue_pct=queue_pct, table=table)
        ablation[fs] = _clean(runs[fs].metrics)
    with err.status("replaying the hold-out through the live engine"):
        latency = replay_latency(records, runs["both"].model, split_ms)
    result = {**ablation["both"], **_clean(latency), "ablation": ablation}
    if as_json:
        print(json.dumps(result))
    else:
        for fs, m in ablation.items():
            _print_metrics(m, f"{fs} features")
        _print_metrics(latency, "live engine replay")


if __name__ == "__main__":
    app()


@app.command("ensure-model")
def ensure_model() -> None:
    """Give the fraud stage a model when it has none: unless
    $VOLTRISK_HOME/fraud/fraud_model.json exists, train one on a simulated book (the
    model `make up` starts with). compose.yaml runs it once before the fraud worker;
    replace the file with a model trained on your own claims (`voltrisk fraud train
    --model-out`) and restart the fraud worker.

    Example: VOLTRISK_HOME=/var/lib/voltrisk voltrisk fraud ensure-model
    """
    from voltrisk.local import ensure_fraud_model
    from voltrisk.settings import WorkerSettings

    with err.status("training the fraud model on a simulated book"):
        err.print(ensure_fraud_model(WorkerSettings().home), soft_wrap=True)
