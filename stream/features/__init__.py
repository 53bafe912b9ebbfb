"""Streaming risk features: pure functions over batches of clean telemetry.

The agent's whole interface (see ``docs/features.md``)::

    batch = Batch.from_records(pairs)                 # (vehicle_id, record) pairs
    up = update(states, batch, cell_table)            # states: {vehicle_id: VehicleState}
    # persist up.states (encode_state), emit up.trips / up.daily / up.visits / up.crashes
    up = flush_idle(states, watermark_ms, cell_table) # on a timer
    feats = vehicle_features_from_daily(daily_rows, as_of_day)

Training uses the same functions: ``features_offline(batch)`` over a replayed history,
or ``vehicle_features_from_daily`` over ``vehicle_daily FINAL`` rows from ClickHouse.
"""

from stream.features.batch import Alarms, Batch, Crashes, Dynamics, States
from stream.features.cells import CellTable, cell_aggregates, rollup_for_display
from stream.features.outputs import (
    CellCrashV1,
    CellVisitV1,
    DailyV1,
    ScoreV1,
    TripV1,
    VehicleFeaturesV1,
    as_columns,
    vehicle_feature_records,
)
from stream.features.pipeline import (
    Replay,
    Update,
    features_offline,
    flush_idle,
    update,
    vehicle_features_from_states,
)
from stream.features.state import (
    VehicleState,
    decode_history,
    decode_state,
    encode_history,
    encode_state,
    merge_history,
)
from stream.features.windows import feature_names, local_day, vehicle_features_from_daily

__all__ = [
    "Alarms", "Batch", "CellCrashV1", "CellTable", "CellVisitV1", "Crashes", "DailyV1", "Dynamics", "Replay",
    "States", "TripV1", "Update", "VehicleFeaturesV1", "VehicleState", "as_columns", "cell_aggregates",
    "decode_state", "encode_state", "feature_names", "features_offline", "flush_idle", "local_day",
    "rollup_for_display", "update", "vehicle_features_from_daily", "ScoreV1", "vehicle_feature_records",
    "vehicle_features_from_states", "decode_history", "encode_history", "merge_history",
]
