"""What the pages show, computed from the repository's DataFrames.

Plain functions over pandas, no Streamlit: unit tests call them directly. Times
arrive as UTC epoch milliseconds or seconds (the warehouse stores UTC) and leave
as timezone-aware UTC timestamps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

QUANTILES = ("p50", "p95", "p99")


def utc_from_ms(ms: pd.Series) -> pd.Series:
    return pd.to_datetime(ms.astype("int64"), unit="ms", utc=True)


def age_text(ms: int | None, now_ms: int) -> str:
    """How long ago an epoch-millisecond time was, in words.

    >>> age_text(1_000, 61_000)
    '1 min ago'
    >>> age_text(0, 3 * 86_400_000)
    '3 d ago'
    >>> age_text(None, 0)
    'never'
    """
    if ms is None or pd.isna(ms):
        return "never"
    s = max(0, (now_ms - int(ms)) // 1000)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} s ago"


def fleet_totals(by_carmaker: pd.DataFrame) -> dict:
    """Vehicles, stored events and the newest event time over all carmakers."""
    if by_carmaker.empty:
        return {"vehicles": 0, "events": 0, "carmakers": 0, "last_ts_ms": None}
    return {
        "vehicles": int(by_carmaker["vehicles"].sum()),
        "events": int(by_carmaker["events"].sum()),
        "carmakers": int(len(by_carmaker)),
        "last_ts_ms": int(by_carmaker["last_ts_ms"].max()),
    }


def carmaker_table(by_carmaker: pd.DataFrame, now_ms: int) -> pd.DataFrame:
    out = by_carmaker.assign(
        last_event_utc=utc_from_ms(by_carmaker["last_ts_ms"]),
        last_event_age=[age_text(ms, now_ms) for ms in by_carmaker["last_ts_ms"]],
    )
    return out[["carmaker", "vehicles", "events", "last_event_utc", "last_event_age"]]


def vehicle_table(vehicles: pd.DataFrame) -> pd.DataFrame:
    out = vehicles.assign(last_event_utc=utc_from_ms(vehicles["last_ts_ms"]))
    return out[["vehicle_id", "carmaker", "events", "dynamics_events", "state_events", "last_event_utc"]]


def _split_quantiles(df: pd.DataFrame) -> pd.DataFrame:
    q = np.vstack(df["latency_q_ms"].to_numpy()) if len(df) else np.empty((0, len(QUANTILES)))
    return df.drop(columns="latency_q_ms").assign(**{f"latency_{name}_ms": q[:, i] for i, name in enumerate(QUANTILES)})


def throughput_by_minute(minutes: pd.DataFrame) -> pd.DataFrame:
    """One row per minute, one events/s column per topic (missing minutes are 0)."""
    if minutes.empty:
        return pd.DataFrame()
    wide = minutes.assign(events_per_s=minutes["events"] / 60.0, minute_utc=pd.to_datetime(minutes["minute_s"], unit="s", utc=True))
    return wide.pivot_table(index="minute_utc", columns="topic", values="events_per_s", fill_value=0.0).sort_index()


def latency_by_minute(minutes: pd.DataFrame) -> pd.DataFrame:
    """One row per minute, the p95 end-to-end latency per topic in milliseconds."""
    if minutes.empty:
        return pd.DataFrame()
    df = _split_quantiles(minutes).assign(minute_utc=pd.to_datetime(minutes["minute_s"], unit="s", utc=True))
    return df.pivot_table(index="minute_utc", columns="topic", values="latency_p95_ms").sort_index()


def topic_summary(topics: pd.DataFrame) -> pd.DataFrame:
    """Per topic: events, mean events/s over the window and latency quantiles.

    The window runs from the start of the first minute to the end of the last one.
    """
    if topics.empty:
        return pd.DataFrame(columns=["topic", "events", "events_per_s", *(f"latency_{q}_ms" for q in QUANTILES)])
    df = _split_quantiles(topics)
    span_s = (df["last_minute_s"] - df["first_minute_s"]).astype("int64") + 60
    df = df.assign(events_per_s=df["events"] / span_s)
    return df[["topic", "events", "events_per_s", *(f"latency_{q}_ms" for q in QUANTILES)]]


def dlq_table(reasons: pd.DataFrame) -> pd.DataFrame:
    return reasons.assign(last_refused_utc=utc_from_ms(reasons["last_stored_ts_ms"])).drop(columns="last_stored_ts_ms")


def dlq_latest_table(latest: pd.DataFrame) -> pd.DataFrame:
    out = latest.assign(refused_utc=utc_from_ms(latest["stored_ts_ms"])).drop(columns="stored_ts_ms")
    return out[["refused_utc", "source_topic", "source_partition", "source_offset", "reason", "message"]]
