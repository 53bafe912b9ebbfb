"""Generate the published contract from the record types.

``schemas/<topic>.json`` (one JSON Schema per topic with a record type) and
``asyncapi.yaml`` (AsyncAPI 3.0: a channel per raw, clean and dead-letter
topic, with key, headers and one example message each). Everything here is
derived from ``stream/records.py``, ``stream/topics.py``, ``stream/gate.py`` and
``contracts/examples.py``: the examples of the clean and DLQ topics are what the
real gate makes of the raw examples. ``tests/gate/test_gate_contracts.py`` fails
when the committed files differ from what this module renders.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import yaml

from contracts.examples import EXAMPLE_TS_MS, RAW_EXAMPLES
from stream import topics
from stream.gate import (
    COORD_SYSTEMS,
    CONSENT_SCOPES,
    REASONS,
    SCHEMA_VERSIONS,
    Accepted,
    Gate,
    dlq_message,
)
from voltrisk.settings import WorkerSettings

SCHEMA_DIR = "schemas"
ASYNCAPI_FILE = "asyncapi.yaml"
_VIN_PATTERN = "^[A-HJ-NPR-Z0-9]{17}$"
_SCOPE = "(" + "|".join(CONSENT_SCOPES) + ")"
# Examples are rendered with the development key and a fixed ingest clock so the
# committed files do not depend on the environment or the time of export.
_EXAMPLE_SETTINGS = {name: WorkerSettings.model_fields[name].default
                     for name in ("pseudonym_key", "pseudonym_key_version", "worker_app_id", "max_payload_bytes")}
_EXAMPLE_INGEST_S = (EXAMPLE_TS_MS + 2 * 3_600_000) / 1000  # after every example event


def _header(description: str, **schema) -> dict:
    return {"type": "string", "description": description, **schema}


def _headers_schemas() -> dict[str, dict]:
    raw = {
        "schema_version": _header("Contract version of the topic; only 1 exists", enum=list(SCHEMA_VERSIONS)),
        "source_protocol": _header("Where the record came from, lowercase token, e.g. gbt32960-2025, oem-json",
                                   pattern="^[a-z0-9][a-z0-9._-]{0,39}$"),
        "coord_sys": _header("Datum of lat/lon; GCJ02 is converted to WGS84 by the gate", enum=list(COORD_SYSTEMS)),
        "consent_scope": _header("Comma list of the purposes the driver consented to; records whose scope does not "
                                 "cover the consuming purpose are dead-lettered (no_consent)",
                                 pattern=f"^{_SCOPE}(,{_SCOPE})*$"),
    }
    telemetry_required = ["schema_version", "source_protocol", "coord_sys", "consent_scope"]
    clean = {
        "schema_version": raw["schema_version"],
        "source_protocol": raw["source_protocol"],
        "consent_scope": raw["consent_scope"],
        "key_version": _header("Version of the pseudonymisation key that made the message key", pattern="^[0-9]+$"),
        "ingest_ts_ms": _header("When the gate accepted the record, Unix epoch milliseconds UTC", pattern="^[0-9]+$"),
    }
    dlq = {
        "source_topic": _header("Topic the refused message was read from"),
        "source_partition": _header("Its partition", pattern="^[0-9]+$"),
        "source_offset": _header("Its offset", pattern="^[0-9]+$"),
        "error_class": _header("Coarse class of the reason", enum=sorted({r.error_class for r in REASONS.values()})),
        "reason": {"type": "string", "description": "Stable reason code",
                   "oneOf": [{"const": r.code, "description": f"{r.error_class}: {r.fix}"} for r in REASONS.values()]},
        "message": _header("One sentence naming the topic, partition, offset, field and what to do"),
        "source_value_bytes": _header("Length of the original value in bytes (the DLQ value may be cut)",
                                      pattern="^[0-9]+$"),
        "gate_app_id": _header("Worker deployment whose gate refused the message (VOLTRISK_WORKER_APP_ID)"),
        "gate_purpose": _header("Purpose that gate checks consent for", enum=list(CONSENT_SCOPES)),
    }
    return {
        "TelemetryHeaders": {"type": "object", "properties": raw, "required": telemetry_required},
        "ClaimsHeaders": {"type": "object", "properties": raw,
                          "required": [h for h in telemetry_required if h != "coord_sys"]},
        "CleanHeaders": {"type": "object", "properties": clean, "required": list(clean)},
        "DlqHeaders": {
            "type": "object", "properties": dlq, "required": list(dlq),
            "patternProperties": {"^source_header\\.": _header("The producer's own headers, VIN-shaped text masked, "
                                                               "cut to 256 bytes")},
        },
    }


def _key_schema(spec: topics.TopicSpec) -> dict:
    if spec is topics.DLQ:
        return {"type": ["string", "null"], "description": "The source key: pseudonymous vehicle id for ev.* topics "
                                                           "(v<version>-x... when it was not a valid VIN), the claim id "
                                                           "with VIN-shaped text masked for claims, null when empty"}
    if spec in topics.RAW and spec.kind == "telemetry":
        return {"type": "string", "pattern": _VIN_PATTERN,
                "description": "The VIN, 17 characters (case and surrounding spaces are normalised)"}
    if spec.kind == "telemetry":
        return {"type": "string", "pattern": "^v[0-9]+-[0-9a-f]{32}$",
                "description": "Pseudonymous vehicle id: v<key version>-<HMAC-SHA256 of the VIN, 128 bits hex>"}
    return {"type": "string", "minLength": 1, "maxLength": 64, "description": "The claim id (= claim_id in the value)"}


def _channel_id(topic: str) -> str:
    return topic.replace(".", "_")


def _headers_text(headers) -> dict[str, str]:
    return {name: value.decode() for name, value in headers}


def _examples() -> dict[str, dict]:
    """topic -> {headers, key, payload} for every raw, clean and DLQ topic,
    the clean and DLQ ones produced by the real gate."""
    gate = Gate(WorkerSettings(**_EXAMPLE_SETTINGS), clock=lambda: _EXAMPLE_INGEST_S)
    out: dict[str, dict] = {}
    for topic, ex in RAW_EXAMPLES.items():
        value = msgspec.json.encode(ex.record)
        headers = [(k, v.encode()) for k, v in ex.headers.items()]
        out[topic] = {"key": ex.key, "headers": ex.headers, "payload": msgspec.to_builtins(ex.record)}
        accepted = gate.check(topic, ex.key.encode(), value, headers, 0, 0)
        if not isinstance(accepted, Accepted):
            raise RuntimeError(f"the {topic} example is refused by the gate: {accepted.message}")
        out[accepted.topic] = {"key": accepted.key.decode(), "headers": _headers_text(accepted.headers),
                               "payload": msgspec.json.decode(accepted.value)}
    bad = RAW_EXAMPLES["ev.dynamics.v1"]
    bad_record = msgspec.structs.replace(bad.record, event_id="dy-000002")
    bad_value = msgspec.json.encode(bad_record).replace(b'"speed_kmh":42.5', b'"speed_kmh":425.0')
    bad_headers = [(k, v.encode()) for k, v in bad.headers.items()]
    rejected = gate.check("ev.dynamics.v1", bad.key.encode(), bad_value, bad_headers, 3, 1042)
    key, value, headers = dlq_message(rejected, "ev.dynamics.v1", 3, 1042, bad.key.encode(), bad_value, bad_headers)
    out[topics.DLQ.name] = {"key": key.decode(), "headers": _headers_text(headers), "payload": value.decode()}
    return out


def _message(spec: topics.TopicSpec, example: dict, headers_ref: str, payload: dict, content_type: str) -> dict:
    return {
        "name": _channel_id(spec.name),
        "title": spec.name,
        "summary": spec.doc,
        "contentType": content_type,
        "headers": {"$ref": f"#/components/schemas/{headers_ref}"},
        "payload": payload,
        "bindings": {"kafka": {"key": _key_schema(spec), "bindingVersion": "0.5.0"}},
        "examples": [{"name": f"{_channel_id(spec.name)}_example", "headers": example["headers"],
                      "payload": example["payload"]}],
    }


def asyncapi_document() -> dict:
    record_types = [spec.record for spec in topics.RAW]
    refs, record_schemas = msgspec.json.schema_components(record_types, ref_template="#/components/schemas/{name}")
    ref_by_topic = {spec.name: ref for spec, ref in zip(topics.RAW, refs)}
    examples = _examples()
    channels: dict[str, dict] = {}
    operations: dict[str, dict] = {}
    messages: dict[str, dict] = {}
    for spec in (*topics.RAW, *topics.CLEAN, topics.DLQ):
        cid = _channel_id(spec.name)
        if spec is topics.DLQ:
            payload = {"type": "string", "description": "The refused message's value bytes, cut to max_payload_bytes, "
                                                        "VIN-shaped text masked with asterisks"}
            messages[cid] = _message(spec, examples[spec.name], "DlqHeaders", payload, "application/octet-stream")
        else:
            raw_name = spec.name.removeprefix("clean.")
            headers_ref = ("CleanHeaders" if spec in topics.CLEAN else
                           "TelemetryHeaders" if spec.kind == "telemetry" else "ClaimsHeaders")
            messages[cid] = _message(spec, examples[spec.name], headers_ref, ref_by_topic[raw_name], "application/json")
        channels[cid] = {
            "address": spec.name,
            "title": spec.name,
            "description": f"{spec.doc}. Key: {spec.key}.",
            "messages": {cid: {"$ref": f"#/components/messages/{cid}"}},
            "bindings": {"kafka": {"topic": spec.name, "bindingVersion": "0.5.0"}},
        }
        inbound = spec in topics.RAW
        operations[("receive_" if inbound else "send_") + cid] = {
            "action": "receive" if inbound else "send",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": ("Producers (carmakers, claims system) publish here; the gate consumes" if inbound
                        else "The gate publishes here"),
            "messages": [{"$ref": f"#/channels/{cid}/messages/{cid}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "voltrisk topic contracts",
            "version": "1.0.0",
            "description": (
                "Generated by `voltrisk contracts export` from stream/records.py; do not edit by hand. "
                "Carmakers produce to the raw topics with the VIN as key; the ingest gate validates, converts "
                "GCJ-02 to WGS-84, pseudonymises VINs and republishes on clean.* or dead-letters to "
                f"{topics.DLQ.name}. See docs/integration.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka",
                              "description": "Embedded single-node broker (voltrisk broker)"}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": {**record_schemas, **_headers_schemas()}, "messages": messages},
    }


def topic_schema(spec: topics.TopicSpec) -> dict:
    schema = msgspec.json.schema(spec.record)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:voltrisk:contract:{spec.name}",
        "title": spec.name,
        "description": f"{spec.doc}. Kafka key: {spec.key}. Generated from stream/records.py; do not edit.",
        **schema,
    }


class _Dumper(yaml.SafeDumper):
    """No anchors/aliases: shared sub-documents are written out in full, so the
    file reads (and diffs) like a hand-written one."""

    def ignore_aliases(self, data) -> bool:
        return True


def render() -> dict[str, str]:
    """Relative path -> file text of the whole contract."""
    files = {
        f"{SCHEMA_DIR}/{spec.name}.json": json.dumps(topic_schema(spec), indent=2, ensure_ascii=False) + "\n"
        for spec in topics.ALL
        if spec.record is not None
    }
    files[ASYNCAPI_FILE] = yaml.dump(asyncapi_document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
    return files


def write(out_dir: Path) -> list[Path]:
    """Write the rendered contract under ``out_dir``; returns the paths written."""
    written = []
    for rel, text in render().items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written

