"""All the dashboard's SQL, and the only module that talks to the warehouse.

Every value that reaches SQL is bound as a ClickHouse query parameter
(``{name:Type}`` placeholders, sent apart from the statement); nothing a user types
is ever formatted into a statement. ``run`` is plain Python (used by tests and the
benchmark); the functions at the bottom are the pages' thin, cached entry points.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from voltrisk.settings import DashboardSettings


class WarehouseUnavailable(Exception):
    """The ClickHouse endpoint does not answer."""


class TableMissing(Exception):
    """A page's table has not been created in this warehouse yet."""


# Per-vehicle activity from the rollup, one row per (vehicle, carmaker, topic):
# uniqExactMerge counts each event id once even if the sink re-delivered it.
_ACTIVITY = """
    SELECT vehicle_id, carmaker, topic, uniqExactMerge(events) AS events,
           max(last_ts_ms) AS last_ts_ms, max(last_stored_ts_ms) AS last_stored_ts_ms
    FROM vehicle_activity GROUP BY vehicle_id, carmaker, topic
"""

QUERIES: dict[str, str] = {
    "tables": "SELECT name FROM system.tables WHERE database = currentDatabase()",
    "fleet_by_carmaker": f"""
        SELECT carmaker, uniqExact(vehicle_id) AS vehicles, sum(events) AS events,
               max(last_ts_ms) AS last_ts_ms, max(last_stored_ts_ms) AS last_stored_ts_ms
        FROM ({_ACTIVITY}) GROUP BY carmaker ORDER BY carmaker
    """,
    # the most recently active vehicles whose pseudonymous id starts with the search text
    "vehicles": f"""
        SELECT vehicle_id, any(carmaker) AS carmaker,
               sumIf(events, topic = 'dynamics') AS dynamics_events, sumIf(events, topic = 'state') AS state_events,
               sum(events) AS events, max(last_ts_ms) AS last_ts_ms
        FROM ({_ACTIVITY}) WHERE startsWith(vehicle_id, {{prefix:String}})
        GROUP BY vehicle_id ORDER BY last_ts_ms DESC, vehicle_id LIMIT {{limit:UInt32}}
    """,
    # per topic per minute over the last `window_min` minutes of data (relative to the
    # newest minute stored, so a stopped pipeline still shows its last state)
    "pipeline_minutes": """
        SELECT topic, toUnixTimestamp(minute) AS minute_s, sum(events) AS events,
               quantilesMerge(0.5, 0.95, 0.99)(latency_ms) AS latency_q_ms
        FROM pipeline_minute
        WHERE minute > (SELECT max(minute) FROM pipeline_minute) - toIntervalMinute({window_min:UInt32})
        GROUP BY topic, minute_s ORDER BY topic, minute_s
    """,
    "pipeline_topics": """
        SELECT topic, sum(events) AS events, toUnixTimestamp(min(minute)) AS first_minute_s, toUnixTimestamp(max(minute)) AS last_minute_s,
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
}


def connect(url: str, user: str, password: str | None):
    """A clickhouse-connect client, or ``WarehouseUnavailable`` naming the URL."""
    from clickhouse_connect.driver.exceptions import OperationalError

    from warehouse.client import http_client

    try:
        return http_client(url, user=user, password=password)
    except OperationalError:
        raise WarehouseUnavailable(unavailable_message(url)) from None


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
