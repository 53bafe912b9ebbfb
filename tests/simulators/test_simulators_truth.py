"""Ground truth lands in the warehouse tables of migration 0041, pseudonymised."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from simulators import truth_store


def test_truth_rows_cover_rings_claims_and_drivers(small_run, tmp_path):
    small_run.truth.write(tmp_path, small_run.pop)
    rows = truth_store.truth_rows(tmp_path, "sim-5", lambda vin: "v1-" + vin.lower())
    ring_claims = [r for r in rows["ring_truth"] if r[2] == "claim"]
    assert len(ring_claims) == sum(len(r["claim_ids"]) for r in small_run.truth.rings)
    kinds = {r[2] for r in rows["ring_truth"]}
    assert {"claim", "phone", "address", "bank_account", "vehicle_id", "garage", "lawyer", "clinic"} <= kinds
    assert not any(len(r[3]) == 17 and r[3].isupper() for r in rows["ring_truth"] if r[2] == "vehicle_id")
    assert len(rows["claim_truth"]) == len(small_run.truth.claims)
    assert len(rows["driver_truth"]) == small_run.pop.n


def test_truth_load_into_an_embedded_warehouse(small_run, tmp_path):
    small_run.truth.write(tmp_path / "truth", small_run.pop)
    env = {**os.environ, "VOLTRISK_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'wh'}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "voltrisk",
            "simulate",
            "truth-load",
            "--truth",
            str(tmp_path / "truth"),
            "--run-id",
            "sim-5",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts["claim_truth"] == len(small_run.truth.claims)
    assert counts["driver_truth"] == small_run.pop.n
    assert counts["ring_truth"] > sum(len(r["claim_ids"]) for r in small_run.truth.rings)
