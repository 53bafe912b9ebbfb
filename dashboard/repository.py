"""The dashboard's data access: all its SQL (the only module that talks to the
warehouse), the pricing model registry on disk, and Kafka consumer lag.

Every value that reaches SQL is bound as a ClickHouse query parameter
(``{name:Type}`` placeholders, sent apart from the statement); nothing a user types
is ever formatted into a statement. ``run`` is plain Python (used by tests and the
benchmark); the other functions are the pages' thin, cached entry points.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from stream.features.outputs import VehicleFeaturesV1
from voltrisk.settings import DashboardSettings

# the 30-day window features of the contract, the ones the telematics multiplier prices
FEATURES_30D: tuple[str, ...] = tuple(f for f in VehicleFeaturesV1.__struct_fields__ if f.endswith("_30d"))
FLEET_QUANTILES = tuple(round(q / 100, 2) for q in range(1, 100))


class WarehouseUnavailable(Exception):
    """The ClickHouse endpoint does not answer."""


class TableMissing(Exception):
    """A page's table has not been created in this warehouse yet."""


# Per-vehicle activity, one row per (vehicle, carmaker, topic). Fleet-wide views read
# the row-count rollup (0040, one small row each); one vehicle's drill-down counts its
# distinct event ids in the telemetry tables (vehicle_id leads their sort key, so only
# that vehicle's granules are read).
_ACTIVITY = """
    SELECT vehicle_id, carmaker, topic, sum(events) AS event_count,
           max(last_ts_ms) AS last_ts_ms, max(last_stored_ts_ms) AS last_stored_ts_ms
    FROM vehicle_rollup GROUP BY vehicle_id, carmaker, topic
"""
_ACTIVITY_EXACT = " UNION ALL ".join(f"""
    SELECT vehicle_id, carmaker, '{topic}' AS topic, uniqExact(event_id) AS event_count,
           max(ts_ms) AS last_ts_ms, max(stored_ts_ms) AS last_stored_ts_ms
    FROM {table} WHERE vehicle_id = {{vehicle_id:String}} GROUP BY vehicle_id, carmaker""" for topic, table in
    (("dynamics", "telemetry_dynamics"), ("state", "telemetry_state")))

QUERIES: dict[str, str] = {
    "tables": "SELECT name FROM system.tables WHERE database = currentDatabase()",
    "fleet_by_carmaker": f"""
        SELECT carmaker, uniqExact(vehicle_id) AS vehicles, sum(event_count) AS events,
               max(last_ts_ms) AS last_ts_ms, max(last_stored_ts_ms) AS last_stored_ts_ms
        FROM ({_ACTIVITY}) GROUP BY carmaker ORDER BY carmaker
    """,
    # the most recently active vehicles whose pseudonymous id starts with the search text
    "vehicles": f"""
        SELECT vehicle_id, any(carmaker) AS carmaker,
               sumIf(event_count, topic = 'dynamics') AS dynamics_events, sumIf(event_count, topic = 'state') AS state_events,
               sum(event_count) AS events, max(last_ts_ms) AS last_ts_ms
        FROM ({_ACTIVITY}) WHERE startsWith(vehicle_id, {{prefix:String}})
        GROUP BY vehicle_id ORDER BY last_ts_ms DESC, vehicle_id LIMIT {{limit:UInt32}}
    """,
    # per topic per minute over the last `window_min` minutes of data (relative to the
    # newest minute stored, so a stopped pipeline still shows its last state)
    "pipeline_minutes": """
        SELECT topic, toUnixTimestamp(minute) AS minute_s, sum(events) AS event_count,
               quantilesMerge(0.5, 0.95, 0.99)(latency_ms) AS latency_q_ms
        FROM pipeline_minute
        WHERE minute > (SELECT max(minute) FROM pipeline_minute) - toIntervalMinute({window_min:UInt32})
        GROUP BY topic, minute_s ORDER BY topic, minute_s
    """,
    "pipeline_topics": """
        SELECT topic, sum(events) AS event_count, toUnixTimestamp(min(minute)) AS first_minute_s, toUnixTimestamp(max(minute)) AS last_minute_s,
               quantilesMerge(0.5, 0.95, 0.99)(latency_ms) AS latency_q_ms
        FROM pipeline_minute
        WHERE minute > (SELECT max(minute) FROM pipeline_minute) - toIntervalMinute({window_min:UInt32})
        GROUP BY topic ORDER BY topic
    """,
    "dlq_reasons": """
        SELECT source_topic, reason, error_class, count() AS records, max(stored_ts_ms) AS last_stored_ts_ms
        FROM dlq FINAL GROUP BY source_topic, reason, error_class ORDER BY records DESC, source_topic, reason
    """,
    # the refusal message only: payloads may carry personal data and stay in the warehouse
    "dlq_latest": """
        SELECT stored_ts_ms, source_topic, source_partition, source_offset, reason, message
        FROM dlq FINAL ORDER BY stored_ts_ms DESC, source_topic, source_offset DESC LIMIT {limit:UInt32}
    """,
    # Risk map input: the additive sums of the visits per res-7 cell, and the exact
    # number of distinct vehicles per res-7 cell (for the k-vehicle threshold).
    "cells_r7": """
        SELECT h3ToParent(cell, 7) AS cell_r7, uniqExact(vehicle_id) AS vehicle_n,
               sum(driving_s) AS driving_s_sum, sum(distance_km) AS distance_km_sum,
               sum(hard_brake_n) AS hard_brake_n_sum, sum(harsh_accel_n) AS harsh_accel_n_sum,
               sum(harsh_turn_n) AS harsh_turn_n_sum, sumForEach(speed_hist_s) AS speed_hist_s_sum
        FROM cell_visits FINAL
        WHERE day > (SELECT max(day) FROM cell_visits) - {days:UInt32}
        GROUP BY cell_r7
    """,
    # crashes in the same window of local (UTC+8) days as the visits
    "crash_cells_r7": """
        SELECT h3ToParent(cell, 7) AS cell_r7, count() AS crashes FROM cell_crashes FINAL
        WHERE intDiv(ts_ms + 28800000, 86400000) > (SELECT max(day) FROM cell_visits) - {days:UInt32}
        GROUP BY cell_r7
    """,
    "fraud_status_counts": """
        SELECT status, count() AS alerts, sum(expected_saving_eur) AS saving_eur FROM fraud_queue GROUP BY status
    """,
    "fraud_queue": """
        SELECT alert_id, claim_id, ring_id, score, amount_eur, expected_saving_eur, verdict, ring_claims,
               ring_confirmed, status, last_decision, investigator, toUnixTimestamp64Milli(created_at) AS created_ts_ms
        FROM fraud_queue WHERE has({statuses:Array(String)}, status)
        ORDER BY ring_confirmed > 0 DESC, expected_saving_eur DESC, alert_id LIMIT {limit:UInt32}
    """,
    "fraud_alert": """
        SELECT alert_id, claim_id, ring_id, score, amount_eur, expected_saving_eur, verdict, members, ring_claims,
               evidence, reasons, status, last_decision, investigator,
               toUnixTimestamp64Milli(decided_at) AS decided_ts_ms, version
        FROM fraud_queue WHERE alert_id = {alert_id:String}
    """,
    "ring_entities": """
        SELECT kind, entity_key, claim_id FROM fraud_claim_entities FINAL
        WHERE has({claims:Array(String)}, claim_id) ORDER BY kind, entity_key, claim_id
    """,
    "ring_claims": """
        SELECT claim_id, policy_id, loss_ts_ms, amount_eur, verdict, telematics_available, insured_in_cell,
               third_party_in_cell, crash_pulse_found, crash_delta_v_kmh, speed_at_loss_kmh, parked_or_charging_at_loss,
               evidence
        FROM fraud_claims FINAL WHERE has({claims:Array(String)}, claim_id) ORDER BY loss_ts_ms, claim_id
    """,
    "alert_decisions": """
        SELECT ts_ms, status, investigator, note FROM fraud_decisions FINAL
        WHERE alert_id = {alert_id:String} ORDER BY ts_ms
    """,
    "vehicle_activity": _ACTIVITY_EXACT,
    "vehicle_trips": """
        SELECT start_ts_ms, end_ts_ms, duration_s, distance_km, mean_speed_kmh, max_speed_kmh, night_share,
               speeding_share, hard_brake_n, harsh_accel_n, harsh_turn_n, fcw_n, end_reason
        FROM trips FINAL WHERE vehicle_id = {vehicle_id:String} ORDER BY start_ts_ms DESC LIMIT {limit:UInt32}
    """,
    # where the vehicle drove in its last 30 days of data, at display resolution 7
    "vehicle_cells_r7": """
        SELECT h3ToParent(cell, 7) AS cell_r7, sum(driving_s) / 3600 AS exposure_h,
               sum(hard_brake_n + harsh_accel_n + harsh_turn_n) AS harsh_n
        FROM cell_visits FINAL
        WHERE vehicle_id = {vehicle_id:String}
          AND day > (SELECT max(day) FROM cell_visits WHERE vehicle_id = {vehicle_id:String}) - 30
        GROUP BY cell_r7
    """,
    "vehicle_features_latest": """
        SELECT * FROM vehicle_features FINAL WHERE vehicle_id = {vehicle_id:String} ORDER BY as_of_day DESC LIMIT 1
    """,
    # the fleet's percentiles of every 30-day feature on the newest day (column names
    # come from the contract constant above, never from input)
    "fleet_feature_quantiles": "SELECT max(as_of_day) AS latest_day, count() AS vehicles, "
    + ", ".join(f"quantiles({', '.join(map(str, FLEET_QUANTILES))})({f}) AS q_{f}" for f in FEATURES_30D)
    + " FROM vehicle_features FINAL WHERE as_of_day = (SELECT max(as_of_day) FROM vehicle_features)",
    "fleet_features_latest": "SELECT vehicle_id, " + ", ".join(FEATURES_30D)
    + " FROM vehicle_features FINAL WHERE as_of_day = (SELECT max(as_of_day) FROM vehicle_features)",
    "vehicle_scores": """
        SELECT as_of_day, scorer, score FROM scores FINAL WHERE vehicle_id = {vehicle_id:String} ORDER BY as_of_day, scorer
    """,
    # exposure per local day from the per-vehicle daily rows
    "exposure_daily": """
        SELECT day, uniqExact(vehicle_id) AS vehicles, sum(distance_km) AS distance_km_total,
               sum(driving_s) / 3600 AS driving_h, sum(crash_n) AS crashes
        FROM vehicle_daily FINAL GROUP BY day ORDER BY day
    """,
    # segments by carmaker: a vehicle-day of data is 1/365 vehicle-year of exposure
    "segments": """
        SELECT r.carmaker AS carmaker, uniqExact(d.vehicle_id) AS vehicles, count() / 365 AS vehicle_years,
               sum(d.distance_km) AS distance_km_total, sum(d.driving_s) / 3600 AS driving_h,
               sum(d.hard_brake_n) AS hard_brakes, sum(d.crash_n) AS crashes
        FROM vehicle_daily AS d FINAL
        INNER JOIN (SELECT vehicle_id, any(carmaker) AS carmaker FROM vehicle_rollup GROUP BY vehicle_id) AS r
            ON d.vehicle_id = r.vehicle_id
        GROUP BY carmaker ORDER BY carmaker
    """,
    "claims_daily": """
        SELECT intDiv(ts_ms + 28800000, 86400000) AS day, count() AS claims, sum(amount_eur) AS claimed_eur
        FROM claims_fnol FINAL GROUP BY day ORDER BY day
    """,
}


def connect(url: str, user: str, password: str | None):
    """A clickhouse-connect client, or ``WarehouseUnavailable`` naming the URL."""
    from clickhouse_connect.driver.exceptions import OperationalError

    from voltrisk.errors import UserError
    from warehouse.client import http_client

    try:
        return http_client(url, user=user, password=password)
    except OperationalError:
        raise WarehouseUnavailable(unavailable_message(url)) from None
    except UserError as exc:  # a malformed URL in the settings
        raise WarehouseUnavailable(f"VOLTRISK_DASHBOARD_CLICKHOUSE_URL: {exc}") from None


def unavailable_message(url: str) -> str:
    return f"The warehouse endpoint at {url} does not answer: start it with `make up`."


def run(client, name: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Run the named query with its parameters bound; return a DataFrame."""
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    try:
        # Arrow keeps the column names and types of an empty result; Native does not
        return client.query_arrow(QUERIES[name], parameters=params or {}).to_pandas()
    except OperationalError:
        raise WarehouseUnavailable(unavailable_message(client.url)) from None
    except DatabaseError as exc:
        if "UNKNOWN_TABLE" in str(exc) or "Code: 60." in str(exc):
            raise TableMissing(f"query {name!r} needs a table this warehouse does not have yet: {exc}") from None
        raise


# --- Streamlit: one client per process, results cached for cache_ttl_s --------------

_TTL_S = DashboardSettings().cache_ttl_s


def settings() -> DashboardSettings:
    return DashboardSettings()


@st.cache_resource(show_spinner=False)
def _client(url: str, user: str, password: str | None):
    return connect(url, user, password)


@st.cache_data(ttl=_TTL_S, show_spinner=False, max_entries=256)
def _cached(url: str, user: str, name: str, params: tuple[tuple[str, Any], ...]) -> pd.DataFrame:
    s = settings()
    secret = s.dashboard_clickhouse_password.get_secret_value() if s.dashboard_clickhouse_password else None
    return run(_client(url, user, secret), name, dict(params))


def fetch(name: str, **params: Any) -> pd.DataFrame:
    """The named query's result, cached per warehouse URL and parameters."""
    s = settings()
    return _cached(s.dashboard_clickhouse_url, s.dashboard_clickhouse_user, name, tuple(sorted(params.items())))


def clear() -> None:
    """Forget cached results (after this session changed something upstream)."""
    _cached.clear()


def tables() -> set[str]:
    return set(fetch("tables")["name"])


def fleet_by_carmaker() -> pd.DataFrame:
    return fetch("fleet_by_carmaker")


def vehicles(prefix: str = "", limit: int = 200) -> pd.DataFrame:
    return fetch("vehicles", prefix=prefix, limit=limit)


def pipeline_minutes(window_min: int) -> pd.DataFrame:
    return fetch("pipeline_minutes", window_min=window_min)


def pipeline_topics(window_min: int) -> pd.DataFrame:
    return fetch("pipeline_topics", window_min=window_min)


def dlq_reasons() -> pd.DataFrame:
    return fetch("dlq_reasons")


def dlq_latest(limit: int = 20) -> pd.DataFrame:
    return fetch("dlq_latest", limit=limit)


def cells_r7(days: int) -> pd.DataFrame:
    return fetch("cells_r7", days=days)


def crash_cells_r7(days: int) -> pd.DataFrame:
    return fetch("crash_cells_r7", days=days)


def fraud_status_counts() -> pd.DataFrame:
    return fetch("fraud_status_counts")


def fraud_queue(statuses: list[str], limit: int = 200) -> pd.DataFrame:
    return fetch("fraud_queue", statuses=list(statuses), limit=limit)


def fraud_alert(alert_id: str) -> pd.DataFrame:
    return fetch("fraud_alert", alert_id=alert_id)


def ring_entities(claims: list[str]) -> pd.DataFrame:
    return fetch("ring_entities", claims=list(claims))


def ring_claims(claims: list[str]) -> pd.DataFrame:
    return fetch("ring_claims", claims=list(claims))


def alert_decisions(alert_id: str) -> pd.DataFrame:
    return fetch("alert_decisions", alert_id=alert_id)


def vehicle_activity(vehicle_id: str) -> pd.DataFrame:
    return fetch("vehicle_activity", vehicle_id=vehicle_id)


def vehicle_trips(vehicle_id: str, limit: int = 200) -> pd.DataFrame:
    return fetch("vehicle_trips", vehicle_id=vehicle_id, limit=limit)


def vehicle_cells_r7(vehicle_id: str) -> pd.DataFrame:
    return fetch("vehicle_cells_r7", vehicle_id=vehicle_id)


def vehicle_features_latest(vehicle_id: str) -> pd.DataFrame:
    return fetch("vehicle_features_latest", vehicle_id=vehicle_id)


def fleet_feature_quantiles() -> pd.DataFrame:
    return fetch("fleet_feature_quantiles")


def fleet_features_latest() -> pd.DataFrame:
    return fetch("fleet_features_latest")


def vehicle_scores(vehicle_id: str) -> pd.DataFrame:
    return fetch("vehicle_scores", vehicle_id=vehicle_id)


def exposure_daily() -> pd.DataFrame:
    return fetch("exposure_daily")


def segments() -> pd.DataFrame:
    return fetch("segments")


def claims_daily() -> pd.DataFrame:
    return fetch("claims_daily")


# --- Kafka consumer lag (not SQL: read from the brokers) ----------------------------


@st.cache_resource(show_spinner=False)
def _lag_reader(bootstrap: str):
    from dashboard.bus import LagReader
    from voltrisk.settings import KafkaClientSettings

    return LagReader(KafkaClientSettings(kafka_bootstrap=bootstrap))


@st.cache_data(ttl=_TTL_S, show_spinner=False)
def consumer_lag(bootstrap: str, groups: tuple[str, ...]) -> tuple[pd.DataFrame, str | None]:
    """Lag per partition of ``groups``, or an empty frame and why; the failure is cached
    too, so a stopped broker costs one timeout per cache period, not one per click."""
    from dashboard.bus import LAG_COLUMNS

    try:
        return _lag_reader(bootstrap).lag(list(groups)), None
    except ConnectionError as exc:
        return pd.DataFrame(columns=LAG_COLUMNS), str(exc)


# --- the model registry (files, not SQL: the pricing engineers' registry root) ------


@st.cache_data(ttl=_TTL_S, show_spinner=False)
def registry_models(root: str) -> pd.DataFrame:
    """Every registered model version with its status and metrics, one row each."""
    from dataclasses import asdict

    from pricing.registry import Registry

    rows = [asdict(m) for m in Registry(root).models()]
    return pd.DataFrame(rows, columns=["name", "version", "kind", "features", "data_fingerprint", "metrics", "status",
                                       "created_utc", "promoted_utc"])


@st.cache_resource(show_spinner=False, max_entries=16)
def load_model(root: str, name: str, version: int):
    """A registered scorer; a version's files never change once written, so it is cached for the process."""
    from pricing.registry import Registry

    return Registry(root).load(name, version)


def production_telematics(root: str):
    """(name, version, scorer) of the telematics multiplier in production, or None."""
    models = registry_models(root)
    production = models[(models["kind"] == "telematics") & (models["status"] == "production")]
    if production.empty:
        return None
    name, version = production.iloc[0]["name"], int(production.iloc[0]["version"])
    return name, version, load_model(root, name, version)
