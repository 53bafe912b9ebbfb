"""Settings: one frozen pydantic-settings object per deployable.

Every value comes from the environment with the ``VOLTRISK_`` prefix (for example
``VOLTRISK_KAFKA_BOOTSTRAP=broker-1:9092``); defaults run the embedded local mode.
Secrets are ``SecretStr`` so they never print in logs or reprs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# the real French MTPL portfolio (pricing's reference data, the simulators' policy factors
# and claim amounts) sits beside the repository unless VOLTRISK_FREMTPL2_DIR says where
FREMTPL2_DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "freMTPL2"


def fremtpl2_dir() -> Path:
    """The freMTPL2 directory: ``VOLTRISK_FREMTPL2_DIR``, or ``../shared/data/freMTPL2``
    beside the repository."""
    import os

    return Path(os.environ.get("VOLTRISK_FREMTPL2_DIR") or FREMTPL2_DEFAULT_DIR)


_CONFIG = SettingsConfigDict(env_prefix="VOLTRISK_", extra="forbid", frozen=True, env_nested_delimiter="__",
                             hide_input_in_errors=True)  # an error must not print a password it was given


class KafkaClientSettings(BaseSettings):
    """How any voltrisk process reaches Kafka."""

    model_config = _CONFIG

    home: Path = Field(Path(".voltrisk"), description="State directory: PIDs, logs, local data")
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_SSL", "SASL_PLAINTEXT"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    # telemetry topics: one partition is one unit of parallelism (DESIGN §10)
    telemetry_partitions: int = Field(12, ge=1)
    other_partitions: int = Field(3, ge=1)
    replication_factor: int = Field(1, ge=1)
    kafka_fetch_max_wait_ms: int = Field(
        100, ge=0, le=5_000,
        description="How long the broker may hold a consumer's fetch for more data (the worker's and the sink's "
                    "consumers): the latency a live record can wait at each hop")

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaClientSettings:
        if self.kafka_security_protocol.startswith("SASL") and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(f"kafka_security_protocol={self.kafka_security_protocol} needs VOLTRISK_KAFKA_SASL_USERNAME "
                             "and VOLTRISK_KAFKA_SASL_PASSWORD")
        if self.kafka_ssl_cafile is not None and not self.kafka_ssl_cafile.is_file():
            raise ValueError(f"VOLTRISK_KAFKA_SSL_CAFILE {self.kafka_ssl_cafile} is not a file; "
                             "`voltrisk security init` writes the local CA to $VOLTRISK_HOME/security/ca.pem")
        return self

    def aiokafka_kwargs(self) -> dict:
        """Connection keyword arguments of every voltrisk Kafka client: aiokafka producers,
        consumers and admin clients take them as they are, Faust through ``faust_credentials``."""
        kw: dict = {"bootstrap_servers": self.kafka_bootstrap, "security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            kw["sasl_mechanism"] = self.kafka_sasl_mechanism
            kw["sasl_plain_username"] = self.kafka_sasl_username
            kw["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_security_protocol == "SASL_SSL":
            from aiokafka.helpers import create_ssl_context

            # the system's trusted CAs unless a CA file is given; host names are checked either way
            kw["ssl_context"] = create_ssl_context(cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None)
        return kw

    def faust_credentials(self):
        """The same connection options as ``aiokafka_kwargs``, as Faust's ``broker_credentials`` (None for PLAINTEXT)."""
        kw = self.aiokafka_kwargs()
        if "sasl_mechanism" not in kw:
            return None
        import faust

        return faust.SASLCredentials(username=kw["sasl_plain_username"], password=kw["sasl_plain_password"],
                                     mechanism=kw["sasl_mechanism"], ssl_context=kw.get("ssl_context"))


class BrokerSettings(BaseSettings):
    """The embedded single-node Kafka broker (`voltrisk broker`)."""

    model_config = _CONFIG

    home: Path = Path(".voltrisk")
    broker_port: int = 9092
    broker_controller_port: int = 9093
    broker_heap: str = "1g"
    # plaintext (local default) or sasl_ssl: SCRAM-SHA-512 over TLS with ACLs (docs/security.md)
    broker_security: Literal["plaintext", "sasl_ssl"] = "plaintext"
    broker_start_timeout_s: float = 90.0
    java: str = "java"
    mvn: str = "mvn"


class WarehouseSettings(BaseSettings):
    """The warehouse process: owns the embedded chDB store, runs the sink, and
    serves the read-only ClickHouse HTTP endpoint."""

    model_config = _CONFIG

    home: Path = Path(".voltrisk")
    clickhouse_dsn: str = Field("chdb://.voltrisk/warehouse", description="chdb://PATH (embedded) or http(s)://user:pw@host:port/db")
    clickhouse_password: SecretStr | None = None
    warehouse_http_host: str = "127.0.0.1"
    warehouse_http_port: int = 8124
    raw_position_ttl_days: int = Field(30, ge=1)
    sink_batch_rows: int = Field(20_000, ge=1)
    sink_batch_ms: int = Field(500, ge=10)
    sink_group: str = "voltrisk-sink"


WORKER_STAGES = ("gate", "features", "scoring", "fraud")


class WorkerSettings(BaseSettings):
    """The Faust stream worker (`voltrisk worker`)."""

    model_config = _CONFIG

    home: Path = Path(".voltrisk")
    worker_app_id: str = "voltrisk-worker"
    # Faust's web server serves tables: off unless asked for, and then on localhost only
    worker_web_enabled: bool = False
    worker_web_port: int = 6066
    pseudonym_key: SecretStr = Field(
        SecretStr("local-development-key-change-me"),
        description="HMAC-SHA256 key that turns VINs into pseudonymous vehicle ids",
    )
    pseudonym_key_version: int = Field(1, ge=1)
    max_payload_bytes: int = Field(64 * 1024, ge=1024)
    lateness_ms: int = Field(6 * 3600 * 1000, ge=0, description="Events older than this behind the vehicle's newest are late")
    take_batch: int = Field(2_000, ge=1)
    take_within_s: float = Field(
        0.02, gt=0, description="Once the agent is free, a batch waits at most this long after its first event (latency bound)")
    gate_gather_ms: int = Field(
        40, ge=0, le=1_000,
        description="Live (not behind), the gate fetches at most once in this long, so each fetch, batch and "
                    "features step carries more records (CPU per record) at the cost of at most this much latency")
    worker_clickhouse_url: str = Field(
        "http://127.0.0.1:8124",
        description="Where the fraud stage reads telemetry around claims: the warehouse process's read-only endpoint "
                    "locally, a ClickHouse server (with a read-only user) in production")
    worker_clickhouse_user: str = "default"
    worker_clickhouse_password: SecretStr | None = None
    score_every_ms: int = Field(5_000, ge=0, description="Re-score a vehicle at most this often (processing time)")
    worker_stages: str = Field(
        "gate,features,scoring,fraud",
        description="Comma-separated stages this worker runs: gate, features, scoring (needs features), fraud",
    )
    worker_scorer: str = Field(
        "reference",
        description="'reference' (the published-formula score) or the registry name of a telematics model, "
                    "whose production version scores",
    )
    reorder_ms: int = Field(120_000, ge=0, description="Event-time reorder window of the features in catch-up")
    live_hold_ms: int = Field(
        10, ge=0, description="Live records (event time within live_window_ms of the clock) wait this long for their siblings")
    live_window_ms: int = Field(30_000, ge=0, description="Records this close to the wall clock count as live")
    worker_gc_freeze: bool = Field(
        True, description="Once the worker is ready, move what start-up built out of the garbage collector's sight "
                          "(gc.freeze), so full collections walk only what the stream makes")
    local_handoff: bool = Field(
        True, description="The gate hands its clean messages to the same worker's features as soon as Kafka acknowledged "
                          "them, when the worker owns their partitions (off: the features read them from the clean topics only)")
    state_changelog: bool = Field(
        True, description="Write the features' per-vehicle state to features.state.v1, so a worker taking a partition "
                          "over continues its vehicles' trips and windows (off: each worker's state is its own)")
    worker_session_timeout_s: float = Field(
        10.0, ge=6.0, le=300.0,
        description="A worker silent this long leaves the consumer group and its partitions move (crash recovery time)")

    @property
    def worker_heartbeat_s(self) -> float:
        """How often a worker's consumers tell their groups they are alive. The members of a
        group learn from their next heartbeat that another member joined or left, so the
        partitions move within about this long (Kafka's default, 3 s, made a worker that
        joins a busy group wait seconds for its share)."""
        return min(self.worker_session_timeout_s / 5, 0.5)

    @field_validator("worker_stages")
    @classmethod
    def _known_stages(cls, v: str) -> str:
        stages = [s.strip() for s in v.split(",") if s.strip()]
        unknown = sorted(set(stages) - set(WORKER_STAGES))
        if unknown or not stages:
            raise ValueError(f"worker_stages {v!r}: unknown {unknown or 'empty'}; choose from {', '.join(WORKER_STAGES)}")
        if "scoring" in stages and "features" not in stages:
            raise ValueError("worker_stages: scoring runs on the features stage's output; add 'features'")
        return ",".join(stages)

    @property
    def stages(self) -> frozenset[str]:
        return frozenset(self.worker_stages.split(","))

    @property
    def gate_group(self) -> str:
        """The consumer group of the gate's raw-topic consumer (``stream.intake``)."""
        return gate_group(self.worker_app_id)

    @property
    def features_group(self) -> str:
        """The consumer group of the features' clean-topic consumer (``stream.featuresintake``)."""
        return features_group(self.worker_app_id)


def gate_group(worker_app_id: str) -> str:
    return f"{worker_app_id}-gate"


def features_group(worker_app_id: str) -> str:
    return f"{worker_app_id}-features"


class DashboardSettings(BaseSettings):
    """The Streamlit dashboard (`voltrisk dashboard`)."""

    model_config = _CONFIG

    home: Path = Path(".voltrisk")
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8501
    # readers use HTTP: the warehouse process's read-only endpoint locally, a server in production
    dashboard_clickhouse_url: str = "http://127.0.0.1:8124"
    dashboard_clickhouse_user: str = "default"
    dashboard_clickhouse_password: SecretStr | None = None
    k_anonymity_vehicles: int = Field(5, ge=1, description="Cells with fewer vehicles are hidden")
    cache_ttl_s: int = Field(10, ge=0)


class SimulatorSettings(BaseSettings):
    """The fleet and claims simulators (`voltrisk simulate`, `voltrisk load`)."""

    model_config = _CONFIG

    home: Path = Path(".voltrisk")
    sim_city: Literal["shanghai"] = "shanghai"
    sim_coord_sys: Literal["WGS84", "GCJ02"] = "WGS84"
    sim_carmaker: str = "demo-oem"
