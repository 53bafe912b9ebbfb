"""bench/bench_insert.py on a small run: every variant stores every row (the script
exits otherwise), the copies carry the same views as telemetry_dynamics, and the JSON
has one median and ratio per variant."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from voltrisk.harness import REPO

pytestmark = pytest.mark.integration


def test_insert_bench_compares_every_variant_with_the_bare_table():
    out = subprocess.run([sys.executable, "bench/bench_insert.py", "--rows", "20000", "--batch", "10000", "--reps", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    variants = {"bare", "sink", "optimize_on_insert", "exact_activity", "before_0042"}
    assert set(r["rows_per_s"]) == set(r["ratio_to_bare"]) == variants
    assert all(v > 0 for v in r["rows_per_s"].values())
    assert r["ratio_to_bare"]["bare"] == 1.0
    assert set(r["shape_rows_per_s"]) == {"dense", "plain"} and all(v > 0 for v in r["shape_rows_per_s"].values())
    # the views the sink's inserts feed: the rollups, not the dropped per-event-id view
    assert r["views"] == ["pipeline_minute_dynamics_mv", "vehicle_rollup_dynamics_mv"]
    assert "views on telemetry_dynamics: pipeline_minute_dynamics_mv, vehicle_rollup_dynamics_mv" in out.stderr
