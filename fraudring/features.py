"""Claim-level and ring-level features: one definition for training, batch
scoring and the live engine.

A claim's features are read from the entity graph *as of* a time ``asof_ms``
(the graph holds only claims reported by then), so training rows never see
claims from the hold-out period. Feature names carry statistic, key and window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fraudring.graph import DAY_MS, ClaimGraph, links_from_row
from fraudring.verify import NO_TELEMATICS, TelematicsFacts, judge, plausible_max_amount_eur

REUSE_WINDOW_MS = 90 * DAY_MS
_REUSE_KINDS = ("phone", "address", "bank", "person", "vehicle", "garage", "tow", "lawyer", "clinic")

CLAIM_FEATURES = ["amount_eur", "report_delay_h", "prior_claims_by_vehicle", "prior_claims_by_person"]
GRAPH_FEATURES = [f"other_claims_by_{k}_90d" for k in _REUSE_KINDS] + [
    "ring_claims", "ring_people", "ring_entities", "ring_density", "ring_shared_entities",
    "ring_shared_services", "ring_span_days", "ring_claims_per_30d", "ring_amount_eur",
    "ring_cycle_claims", "collision_cycle_len",
]
TELEMATICS_FEATURES = [
    "telematics_available", "insured_in_cell", "third_party_in_cell", "crash_pulse_found", "crash_delta_v_kmh",
    "speed_at_loss_kmh", "parked_or_charging_at_loss", "verdict_contradicted", "amount_per_pulse_limit",
]
# need both the graph and telematics: what share of the ring's claims telemetry contradicts
RING_TELEMATICS_FEATURES = ["ring_contradicted_share", "ring_no_telematics_share"]

FEATURE_SETS: dict[str, list[str]] = {
    "graph": CLAIM_FEATURES + GRAPH_FEATURES,
    "telematics": CLAIM_FEATURES + TELEMATICS_FEATURES,
    "both": CLAIM_FEATURES + GRAPH_FEATURES + TELEMATICS_FEATURES + RING_TELEMATICS_FEATURES,
}

FACT_COLUMNS = ("telematics_available", "insured_in_cell", "third_party_in_cell", "crash_pulse_found",
                "crash_delta_v_kmh", "speed_at_loss_kmh", "parked_or_charging_at_loss")

NAN = float("nan")


def claim_features(graph: ClaimGraph, claim_id: str, asof_ms: int, *, loss_ts_ms: int | None = None,
                   facts: TelematicsFacts | None = None) -> dict[str, float]:
    """Every feature of one claim (all of ``FEATURE_SETS['both']``) as of ``asof_ms``."""
    rec = graph.claim(claim_id)
    comp = graph.component(claim_id)
    since, until = rec.ts_ms - REUSE_WINDOW_MS, min(asof_ms, rec.ts_ms + REUSE_WINDOW_MS)
    reuse = dict.fromkeys(_REUSE_KINDS, 0)
    prior = {"vehicle": 0, "person": 0}
    for e in rec.entities:
        kind = graph.entity_key(e)[0]
        if kind in reuse:
            reuse[kind] = max(reuse[kind], graph.reuse(e, since, until) - 1)
        if kind in prior:
            prior[kind] = max(prior[kind], graph.prior(e, rec.ts_ms))
    span_days = (comp.ts_last_ms - comp.ts_first_ms) / DAY_MS
    f: dict[str, float] = {
        "amount_eur": rec.amount_eur,
        "report_delay_h": NAN if loss_ts_ms is None else (rec.ts_ms - loss_ts_ms) / 3_600_000,
        "prior_claims_by_vehicle": prior["vehicle"],
        "prior_claims_by_person": prior["person"],
        **{f"other_claims_by_{k}_90d": v for k, v in reuse.items()},
        "ring_claims": comp.n_claims,
        "ring_people": comp.n_people,
        "ring_entities": comp.n_entities,
        "ring_density": comp.density,
        "ring_shared_entities": comp.shared_entities,
        "ring_shared_services": comp.shared_services,
        "ring_span_days": span_days,
        "ring_claims_per_30d": comp.n_claims / max(span_days / 30.0, 1.0),
        "ring_amount_eur": comp.amount_eur,
        "ring_cycle_claims": comp.n_cycle_claims,
        "collision_cycle_len": rec.cycle_len,
        "ring_contradicted_share": comp.n_contradicted / comp.n_claims,
        "ring_no_telematics_share": comp.n_no_telematics / comp.n_claims,
    }
    f.update(telematics_features(facts or NO_TELEMATICS, rec.amount_eur))
    return f


def telematics_features(facts: TelematicsFacts, amount_eur: float) -> dict[str, float]:
    verdict = judge(facts, amount_eur).verdict
    return {
        "telematics_available": float(facts.telematics_available),
        "insured_in_cell": float(facts.insured_in_cell) if facts.telematics_available else NAN,
        "third_party_in_cell": NAN if facts.third_party_in_cell is None else float(facts.third_party_in_cell),
        "crash_pulse_found": float(facts.crash_pulse_found) if facts.telematics_available else NAN,
        "crash_delta_v_kmh": facts.crash_delta_v_kmh if facts.telematics_available else NAN,
        "speed_at_loss_kmh": facts.speed_at_loss_kmh if facts.telematics_available else NAN,
        "parked_or_charging_at_loss": float(facts.parked_or_charging_at_loss) if facts.telematics_available else NAN,
        "verdict_contradicted": float(verdict == "contradicted"),
        "amount_per_pulse_limit": (amount_eur / plausible_max_amount_eur(facts.crash_delta_v_kmh)
                                   if facts.crash_pulse_found else NAN),
    }


# --- claims tables --------------------------------------------------------------------

@dataclass(frozen=True)
class TableSpec:
    """Which columns of a claims table mean what."""

    entity_cols: tuple[str, ...]
    id_col: str = "claim_id"
    time_col: str = "ts_ms"
    loss_col: str | None = "loss_ts_ms"
    amount_col: str | None = "amount_eur"
    use_facts: bool = True  # read the telematics-fact columns when the table has them


def _truthy(v: object) -> bool | None:
    if v is None or (isinstance(v, float) and v != v) or v == "":
        return None
    if isinstance(v, str):
        return v.strip().casefold() in ("1", "true", "t", "yes", "y")
    return bool(v)


def facts_from_row(row: Mapping[str, object]) -> TelematicsFacts:
    """Telematics facts from the claims-book columns of one row."""
    if not _truthy(row.get("telematics_available")):
        # the other vehicle may still be ours even when the insured one is not
        return TelematicsFacts(telematics_available=False, third_party_in_cell=_truthy(row.get("third_party_in_cell")))

    def num(col: str) -> float:
        v = row.get(col)
        try:
            x = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return 0.0
        return 0.0 if x != x else x

    return TelematicsFacts(
        telematics_available=True,
        insured_in_cell=bool(_truthy(row.get("insured_in_cell"))),
        third_party_in_cell=_truthy(row.get("third_party_in_cell")),
        crash_pulse_found=bool(_truthy(row.get("crash_pulse_found"))),
        crash_delta_v_kmh=num("crash_delta_v_kmh"),
        speed_at_loss_kmh=num("speed_at_loss_kmh"),
        parked_or_charging_at_loss=bool(_truthy(row.get("parked_or_charging_at_loss"))),
    )


@dataclass
class TableFeatures:
    claim_ids: list[str]
    ts_ms: list[int]
    amount_eur: list[float]
    rows: list[dict[str, float]]
    ring_ids: list[str]  # predicted ring (component) id of each claim at the end of the table
    graph: ClaimGraph


def table_features(records: Sequence[Mapping[str, object]], spec: TableSpec,
                   snapshot_ms: Sequence[int] = ()) -> TableFeatures:
    """Features for every claim of a table, built by replaying claims in report-time
    order into a fresh graph. A claim's features are taken as of the first
    snapshot time at or after its report time (the end of the table when none):
    pass the train/test split time so training rows only see training-period claims."""
    missing = [c for c in (spec.id_col, spec.time_col, *spec.entity_cols) if records and c not in records[0]]
    if missing:
        raise ValueError(f"claims table has no column(s) {', '.join(missing)}; "
                         f"available: {', '.join(map(str, records[0])) if records else 'none'}")
    use_facts = spec.use_facts and bool(records) and "telematics_available" in records[0]
    order = sorted(range(len(records)), key=lambda i: (int(records[i][spec.time_col]), str(records[i][spec.id_col])))
    cuts = sorted(snapshot_ms)
    graph = ClaimGraph()
    out: dict[int, dict[str, float]] = {}
    pending: list[int] = []
    facts: dict[int, TelematicsFacts] = {}

    def flush(asof: int) -> None:
        for j in pending:
            row = records[j]
            loss = row.get(spec.loss_col) if spec.loss_col else None
            cid = str(row[spec.id_col])
            feats = claim_features(graph, cid, asof, facts=facts.get(j),
                                   loss_ts_ms=None if loss is None or loss != loss else int(loss))
            out[j] = feats
        pending.clear()

    for i in order:
        row = records[i]
        ts = int(row[spec.time_col])
        while cuts and ts > cuts[0]:
            flush(cuts.pop(0))
        amount = float(row[spec.amount_col]) if spec.amount_col and spec.amount_col in row else 0.0
        f = facts_from_row(row) if use_facts else NO_TELEMATICS
        facts[i] = f
        graph.add(links_from_row(row, spec.entity_cols, claim_id=str(row[spec.id_col]), ts_ms=ts,
                                 amount_eur=amount, verdict=judge(f, amount).verdict if use_facts else "no_telematics"))
        pending.append(i)
    flush(max((int(r[spec.time_col]) for r in records), default=0))
    return TableFeatures(
        claim_ids=[str(r[spec.id_col]) for r in records],
        ts_ms=[int(r[spec.time_col]) for r in records],
        amount_eur=[out[i]["amount_eur"] for i in range(len(records))],
        rows=[out[i] for i in range(len(records))],
        ring_ids=[graph.component_id(str(r[spec.id_col])) for r in records],
        graph=graph,
    )

