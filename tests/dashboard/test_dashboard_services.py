"""Service functions without Streamlit or a warehouse."""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest

from dashboard import services
from stream.features.cells import rollup_for_display


def _visits(rng: np.random.Generator, n: int) -> dict:
    centre = h3.latlng_to_cell(31.23, 121.47, 8)
    cells = np.array([h3.str_to_int(c) for c in h3.grid_disk(centre, 12)], np.uint64)
    hist = rng.integers(0, 200, (n, 26)).astype(float)
    return {
        "cell": rng.choice(cells, n), "vehicle_id": rng.choice([f"v{i}" for i in range(30)], n),
        "driving_s": hist.sum(axis=1), "distance_km": rng.uniform(0.1, 3, n),
        "hard_brake_n": rng.poisson(0.3, n).astype(float), "harsh_accel_n": rng.poisson(0.2, n).astype(float),
        "harsh_turn_n": rng.poisson(0.1, n).astype(float), "speed_hist_s": list(hist),
    }


def _as_warehouse_sums(visits: dict, crash_cells: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the cells_r7 and crash_cells_r7 queries return for these visits."""
    df = pd.DataFrame({k: v for k, v in visits.items() if k != "speed_hist_s"})
    df["cell_r7"] = [h3.str_to_int(h3.cell_to_parent(h3.int_to_str(int(c)), 7)) for c in df["cell"]]
    df["hist"] = visits["speed_hist_s"]
    g = df.groupby("cell_r7")
    cells = pd.DataFrame({
        "vehicle_n": g["vehicle_id"].nunique(),
        **{f"{c}_sum": g[c].sum() for c in ("driving_s", "distance_km", "hard_brake_n", "harsh_accel_n", "harsh_turn_n")},
        "speed_hist_s_sum": g["hist"].apply(lambda h: np.sum(np.stack(list(h)), axis=0)),
    }).reset_index()
    parents = pd.Series([h3.str_to_int(h3.cell_to_parent(h3.int_to_str(int(c)), 7)) for c in crash_cells], dtype="uint64")
    crashes = parents.value_counts().rename_axis("cell_r7").reset_index(name="crashes")
    return cells, crashes


@pytest.mark.parametrize("k", [1, 5, 12])
def test_risk_cells_match_the_streams_rollup(k):
    rng = np.random.default_rng(7)
    visits = _visits(rng, 2_000)
    crash_cells = rng.choice(visits["cell"], 25)
    expected = pd.DataFrame(rollup_for_display(visits, {"cell": crash_cells}, min_vehicles=k)).sort_values("cell")
    cells, crashes = _as_warehouse_sums(visits, crash_cells)
    shown, hidden = services.risk_cells(cells, crashes, k)
    shown = shown.sort_values("cell")
    assert list(shown["cell"]) == list(expected["cell"])
    assert hidden == cells["cell_r7"].nunique() - len(expected)
    for col in ("vehicle_n", "exposure_h", "harsh_per_h", "crash_n", "speed_p85_kmh", "risk_index"):
        np.testing.assert_allclose(shown[col].to_numpy(float), expected[col].to_numpy(float), rtol=1e-9, err_msg=col)


def test_ring_graph_escapes_quotes_and_keeps_shared_entities_only():
    entities = pd.DataFrame({"kind": ["phone", "phone", "lawyer"], "entity_key": ['1"38', '1"38', "solo"],
                             "claim_id": ["c1", "c2", "c1"]})
    claims = pd.DataFrame({"claim_id": ["c1", "c2"], "verdict": ["contradicted", "consistent"]})
    dot = services.ring_graph_dot(entities, claims)
    assert '"c:c1" -- "e:phone:1\\"38"' in dot and "solo" not in dot


def test_topic_summary_rates_over_the_window():
    topics = pd.DataFrame({"topic": ["t"], "event_count": [1200], "first_minute_s": [0], "last_minute_s": [60],
                           "latency_q_ms": [np.array([10.0, 20.0, 30.0])]})
    row = services.topic_summary(topics).iloc[0]
    assert row["events_per_s"] == 10.0 and (row["latency_p50_ms"], row["latency_p99_ms"]) == (10.0, 30.0)


def test_score_history_one_column_per_scorer_by_local_date():
    """ubi v2 was promoted during 2025-11-25: that day has a score of each version."""
    scores = pd.DataFrame({"as_of_day": [20416, 20416, 20417, 20417, 20417],
                           "scorer": ["reference", "ubi@v1", "reference", "ubi@v1", "ubi@v2"],
                           "score": [80.0, 1.05, 78.5, 1.04, 0.97]})
    history = services.score_history(scores)
    assert list(history.columns) == ["reference", "ubi@v1", "ubi@v2"]
    assert [f"{d:%Y-%m-%d}" for d in history.index] == ["2025-11-24", "2025-11-25"]
    assert history.loc["2025-11-25", "reference"] == 78.5
    assert history["ubi@v1"].tolist() == [1.05, 1.04] and history.loc["2025-11-25", "ubi@v2"] == 0.97


def test_throughput_leaves_out_the_minute_still_filling():
    minutes = pd.DataFrame({"topic": ["t", "t", "t"], "minute_s": [0, 60, 120], "event_count": [600, 600, 30],
                            "latency_q_ms": [np.zeros(3)] * 3})
    rates = services.throughput_by_minute(minutes)
    assert rates["t"].tolist() == [10.0, 10.0]
