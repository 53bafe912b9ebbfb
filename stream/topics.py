"""Every Kafka topic of the platform, in one table: name, record type, key,
partition class. Topics are created explicitly from this table
(``voltrisk topics create``), never auto-created."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stream import records as r
from stream.features import outputs as f


@dataclass(frozen=True)
class TopicSpec:
    name: str
    record: type | None
    key: str
    kind: Literal["telemetry", "other"]
    doc: str
    retention_ms: int | None = None
    compact: bool = False  # a changelog: the broker keeps the last value of each key


# Raw topics: written by carmakers and the claims system.
STATE = TopicSpec("ev.state.v1", r.StateV1, "raw VIN", "telemetry", "Vehicle state (GB/T 32960 shaped)")
DYNAMICS = TopicSpec("ev.dynamics.v1", r.DynamicsV1, "raw VIN", "telemetry", "Driving dynamics, 1-10 Hz")
ALARM = TopicSpec("ev.alarm.v1", r.AlarmV1, "raw VIN", "telemetry", "Battery and vehicle alarms")
CRASH = TopicSpec("ev.crash.v1", r.CrashV1, "raw VIN", "telemetry", "Crash pulses")
FNOL = TopicSpec("claims.fnol.v1", r.FnolV1, "claim id", "other", "First notice of loss")
DECISIONS = TopicSpec("fraud.decisions.v1", r.DecisionV1, "alert id", "other", "Investigator decisions")

RAW = (STATE, DYNAMICS, ALARM, CRASH, FNOL)


def clean_name(raw: str) -> str:
    """The gate's output topic for a raw topic: same record type, pseudonymous key."""
    return f"clean.{raw}"


CLEAN = tuple(
    TopicSpec(clean_name(t.name), t.record, "pseudonymous vehicle id" if t.kind == "telemetry" else "claim id", t.kind,
              f"{t.doc}, validated and pseudonymised")
    for t in RAW
)

DLQ = TopicSpec("voltrisk.dlq.v1", None, "source key (pseudonymised where a VIN)", "other",
                "Refused records with headers naming source topic, partition, offset, error class and reason")
# Derived topics carry one record or a JSON array of one vehicle's records per message.
DERIVED = (
    TopicSpec("trips.v1", f.TripV1, "pseudonymous vehicle id", "telemetry", "Trips (re-emitted with a newer version while open)"),
    TopicSpec("features.daily.v1", f.DailyV1, "pseudonymous vehicle id", "telemetry", "Per-vehicle daily partial aggregates"),
    TopicSpec("features.vehicle.v1", f.VehicleFeaturesV1, "pseudonymous vehicle id", "telemetry", "Rolling 7/30-day per-vehicle features"),
    TopicSpec("features.cell.v1", f.CellVisitV1, "pseudonymous vehicle id", "telemetry", "Per-vehicle visits of H3 res-8 cells"),
    TopicSpec("features.crash.v1", f.CellCrashV1, "pseudonymous vehicle id", "telemetry", "Crashes located to H3 cells"),
    TopicSpec("scores.ubi.v1", f.ScoreV1, "pseudonymous vehicle id", "telemetry", "Usage-based pricing scores"),
)
# The features' per-vehicle state, written by the worker with the outputs of each batch
# to the partition of the vehicle's telemetry: a worker taking the partition over reads it.
FEATURE_STATE = TopicSpec("features.state.v1", None, "store key: s|h + pseudonymous vehicle id", "telemetry",
                          "Changelog of the features' per-vehicle state and closed-day history", compact=True)
ALERTS = TopicSpec("fraud.alerts.v1", None, "alert id", "other", "Fraud ring alerts with evidence")
FRAUD_CLAIMS = TopicSpec("fraud.claims.v1", None, "claim id", "other",
                         "Claims as the fraud engine judged them: the telematics verification of each (fraud_claims)")
FRAUD_ENTITIES = TopicSpec("fraud.claim_entities.v1", None, "claim id", "other",
                           "The entities each claim resolved to, a JSON array a claim (fraud_claim_entities)")
# Clean records the features failed on, sent back to them from the dead-letter topic once the
# defect is fixed (``voltrisk dlq redrive``): read by the features only, not stored again.
REDRIVE = TopicSpec("features.redrive.v1", None, "pseudonymous vehicle id", "telemetry",
                    "Dead-lettered clean records sent back to the features; the source_topic header names their clean topic")

ALL: tuple[TopicSpec, ...] = RAW + CLEAN + (DLQ, DECISIONS) + DERIVED + (FEATURE_STATE, ALERTS, FRAUD_CLAIMS, FRAUD_ENTITIES, REDRIVE)
BY_NAME = {t.name: t for t in ALL}


def partitions_for(spec: TopicSpec, telemetry_partitions: int, other_partitions: int) -> int:
    return telemetry_partitions if spec.kind == "telemetry" else other_partitions


def partition_of(key: bytes, partitions: int) -> int:
    """The partition a keyed message goes to: the Kafka clients' default (murmur2 of the
    key), which the gate relies on to co-partition a vehicle's clean topics."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions
