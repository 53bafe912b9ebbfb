"""Ground truth into the warehouse (tables of migration 0041): ``ring_truth``,
``claim_truth``, ``driver_truth``. VINs are pseudonymised with the gate's keyed HMAC
so truth joins with the warehouse's features and claims."""

from __future__ import annotations

import csv
import json
from pathlib import Path

RING_KINDS = ("phone", "address", "bank_account", "vehicle_id", "policy_id", "name")


def truth_rows(truth_dir: Path, run_id: str, vehicle_id) -> dict[str, list[list]]:
    """Rows per table from a truth directory (``scenario.Truth.write`` or the book's
    ``truth/``); ``vehicle_id`` maps a VIN to its pseudonym."""
    truth_dir = Path(truth_dir)
    rings, claims_, drivers_ = [], [], []
    for line in (truth_dir / "rings.jsonl").read_text().splitlines():
        ring = json.loads(line)
        rid = ring["ring_id"]
        rings += [[run_id, rid, "claim", c] for c in ring["claim_ids"]]
        for m in ring.get("members", []):
            for kind in RING_KINDS:
                v = m.get(kind)
                if v:
                    rings.append([run_id, rid, kind, vehicle_id(v) if kind == "vehicle_id" else v])
        rings += [
            [run_id, rid, kind, v]
            for kind, key in (
                ("phone", "shared_phones"),
                ("address", "shared_addresses"),
                ("bank_account", "shared_bank_accounts"),
            )
            for v in ring.get(key, [])
        ]
        rings += [[run_id, rid, k, ring[k]] for k in ("garage", "tow_company", "lawyer", "clinic") if ring.get(k)]
    with open(truth_dir / "claims_truth.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            claims_.append([run_id, row["claim_id"], int(row["is_fraud"]), row["ring_id"], row["fraud_type"]])
    drivers_path = truth_dir / "drivers.csv"
    if drivers_path.exists():
        with open(drivers_path, newline="") as fh:
            for row in csv.DictReader(fh):
                drivers_.append(
                    [
                        run_id,
                        vehicle_id(row["vehicle_id"]),
                        float(row["true_rate"]),
                        float(row["z"]),
                        int(row["home_cell"]),
                        int(row["work_cell"]),
                    ]
                )
    return {"ring_truth": rings, "claim_truth": claims_, "driver_truth": drivers_}


COLUMNS = {
    "ring_truth": ["run_id", "ring_id", "kind", "value"],
    "claim_truth": ["run_id", "claim_id", "is_fraud", "ring_id", "fraud_type"],
    "driver_truth": ["run_id", "vehicle_id", "true_rate", "latent_risk", "home_cell", "work_cell"],
}


def load(client, rows: dict[str, list[list]]) -> dict[str, int]:
    """Insert the rows (ReplacingMergeTree: reloading the same run is idempotent)."""
    for table, data in rows.items():
        if data:
            client.insert(table, data, column_names=COLUMNS[table])
    return {t: len(d) for t, d in rows.items()}
