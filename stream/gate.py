"""The ingest gate: raw carmaker/claims bytes in, a clean record or a reason out.

Pure and synchronous: no Kafka, no I/O beyond the injected de-duplication store.
The worker's gate step (``stream.agents.gate_batch``, called by its raw-topic
consumer in ``stream.intake``) decides each take of raw messages with
``Gate.check_arrays`` (telemetry batch messages: a message whose records all pass as
one ``Passed``, the others a verdict per record) and ``Gate.check_batch`` (the
rest, record by record), produces what passed to the ``clean.*`` topic and every
``Rejected`` to ``voltrisk.dlq.v1`` via ``dlq_message``; ``voltrisk contracts
validate`` runs the same gate over a file, so a carmaker sees exactly the
decisions the workers would make.

Checks run cheapest first and the first failure wins, so each bad message gets
exactly one reason: topic, size, headers, consent, key, JSON and schema (typed
msgspec decoder), cross-field plausibility, raw VINs in values, then duplicate
and lateness against the per-vehicle state. Only a message that passes every
check touches that state, so garbage cannot move a vehicle's watermark.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

import msgspec

from stream import records as rec
from stream import topics
from stream.geo import gcj02_to_wgs84
from stream.pseudonym import Pseudonymiser, contains_vin, normalise_vin, redact_vins
from voltrisk.settings import WorkerSettings

SCHEMA_VERSIONS = ("1",)
COORD_SYSTEMS = ("WGS84", "GCJ02")
CONSENT_SCOPES = ("pricing", "fraud", "research")
# vehicles sync their clocks from GNSS; minutes ahead means a broken clock, and
# letting it through would push the vehicle's watermark ahead and make the
# vehicle's real events look late
MAX_FUTURE_MS = 10 * 60 * 1000
# event-time interval between sweeps of expired de-duplication entries, at least
_MIN_SWEEP_INTERVAL_MS = 60_000
# a sweep goes over the store a slice per batch, never all of it at once (at scale the
# store holds hours of event ids): this many keys per record decided, at least the minimum
_SWEEP_KEYS_PER_RECORD = 2
_SWEEP_MIN_SLICE = 1_000
_GATE_HEADERS = frozenset(("schema_version", "source_protocol", "coord_sys", "consent_scope"))
_SOURCE_PROTOCOL = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
_CLAIM_ID_MAX = 64
_HEADER_CACHE_LIMIT = 1_024
_VEHICLE_CACHE_LIMIT = 200_000
_DLQ_SOURCE_HEADERS_MAX = 16
_DLQ_SOURCE_HEADER_BYTES = 256


@dataclass(frozen=True, slots=True)
class Reason:
    """A stable rejection code, its coarse class, and what the producer should do."""

    code: str
    error_class: str
    fix: str


REASONS: dict[str, Reason] = {
    r.code: r
    for r in (
        Reason("unknown_topic", "routing", "produce only to the raw topics listed in contracts/asyncapi.yaml"),
        Reason("empty_value", "decode", "send the record as a JSON object; tombstones are not accepted"),
        Reason("payload_too_large", "size", "send one record per message, below max_payload_bytes (64 KiB by default)"),
        Reason("missing_header", "header", "set the schema_version, source_protocol, consent_scope (and coord_sys on ev.* topics) headers"),
        Reason("bad_header", "header", "use a value from the header table in docs/integration.md, once per header"),
        Reason("unknown_schema_version", "header", "set schema_version to 1 for the v1 topics"),
        Reason("no_consent", "consent", "only send records whose consent_scope covers the purpose, or record the driver's consent first"),
        Reason("empty_key", "key", "set the Kafka key to the VIN (ev.* topics) or the claim id (claims.fnol.v1)"),
        Reason("bad_vin", "key", "use the 17-character VIN (digits and capitals without I, O, Q)"),
        Reason("bad_key", "key", "set the key to the claim id, 1-64 UTF-8 characters"),
        Reason("key_mismatch", "key", "set the Kafka key to the record's claim_id"),
        Reason("malformed_json", "decode", "send one UTF-8 JSON object per message"),
        Reason("non_finite", "decode", "send finite numbers only; omit an optional field instead of sending NaN/Infinity"),
        Reason("schema", "validation", "match the field names and types of the topic's JSON Schema in contracts/schemas/"),
        Reason("out_of_range", "validation", "check the unit in the field name and the sensor; the bounds are in the JSON Schema"),
        Reason("inconsistent", "validation", "fix the fields that contradict each other (the message names them)"),
        Reason("future_ts", "validation", "sync the vehicle clock and send ts_ms as Unix epoch milliseconds UTC"),
        Reason("vin_in_value", "privacy", "keep VINs out of event ids and free text; the VIN goes in the Kafka key (or parties[].vehicle_id)"),
        Reason("duplicate", "ordering", "nothing to do if this was a retry: the first copy was accepted"),
        Reason("late", "ordering", "send buffered events within lateness_ms (6 h by default) of the vehicle's newest one"),
        Reason("internal_error", "internal", "report it to the voltrisk team with the source offset; the record is kept here"),
        Reason("features_error", "internal", "nothing to resend: the features step failed on the vehicle's clean records (a voltrisk "
               "defect); they are kept here, and `voltrisk dlq redrive` runs them through the features again once it is fixed "
               "(those older than what the vehicle's state took meanwhile are dropped as late)"),
    )
}


class Accepted(msgspec.Struct, frozen=True, gc=False):
    """A record the gate let through (one per record: created in C, cheaply)."""

    topic: str  # the clean.* topic
    key: bytes  # pseudonymous vehicle id (telemetry) / claim id (claims)
    value: bytes  # re-encoded JSON, positions WGS-84, VINs in claims replaced by pseudonyms
    headers: list[tuple[str, bytes]]  # schema_version, source_protocol, consent_scope, key_version, ingest_ts_ms
    record: msgspec.Struct  # the decoded record (WGS-84)


class Passed(msgspec.Struct, frozen=True, gc=False):
    """A telemetry batch message every record of which the gate let through, decided in
    one pass over the message (``_TopicGate.pass_array``): what ``Accepted`` says of each
    record, said once for the message."""

    topic: str  # the clean.* topic
    key: bytes  # pseudonymous vehicle id
    value: bytes  # the records re-encoded, comma-separated, without the enclosing brackets
    headers: list[tuple[str, bytes]]
    records: list  # the decoded records (WGS-84), in message order
    newest_ts_ms: int


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str  # stable code, a key of REASONS
    error_class: str
    message: str  # one sentence naming the input, the field and what to do
    key: bytes | None = None  # the source key as the DLQ may show it: pseudonymised where a VIN
    # which gate refused it: several deployments (purposes) may gate the same raw topics
    gate_app_id: str = ""
    gate_purpose: str = ""


def reject(code: str, detail: str, key: bytes | None = None, origin: tuple[str, str] = ("", "")) -> Rejected:
    reason = REASONS[code]
    return Rejected(code, reason.error_class, f"{detail}; {reason.fix}", key, *origin)


@dataclass(frozen=True, slots=True)
class _Headers:
    coord_sys: str
    out: tuple[tuple[str, bytes], ...]  # clean-topic headers except ingest_ts_ms


_UNITS = (
    ("_kmh", " km/h"), ("_mps2", " m/s²"), ("_dps", " °/s"), ("_deg", "°"), ("_kw", " kW"), ("_kohm", " kΩ"),
    ("_pct", " %"), ("_km", " km"), ("_ms", " ms"), ("_eur", " EUR"), ("_g", " g"), ("_v", " V"), ("_a", " A"),
    ("_c", " °C"), ("_s", " s"),
)
_MSGSPEC_ERROR = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_BOUND = re.compile(r"^Expected `(?:int|float)` (?P<op>[<>]=?) (?P<bound>\S+)$")
_NON_FINITE_LITERAL = re.compile(rb"[:\[,]\s*-?(?:NaN|Infinity|nan|inf)\b")


def _syntax_error(value: bytes) -> tuple[str, str] | None:
    """(reason, detail) when ``value`` is not well-formed JSON, else None."""
    try:
        msgspec.json.decode(value)
    except msgspec.ValidationError:  # well-formed, but a number overflows a double
        return None
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        if _NON_FINITE_LITERAL.search(value):
            return "non_finite", "the JSON holds NaN or Infinity, which JSON does not allow"
        return "malformed_json", f"the value is not valid JSON ({err})"
    return None


def _unit(field: str) -> str:
    leaf = field.rsplit(".", 1)[-1].split("[", 1)[0]
    return next((unit for suffix, unit in _UNITS if leaf.endswith(suffix)), "")


def _explain(err: msgspec.ValidationError) -> tuple[str, str]:
    """(reason code, detail) for a msgspec validation error, naming the field."""
    m = _MSGSPEC_ERROR.match(str(err))
    what, field = m["what"], (m["path"] or "").lstrip(".")
    where = field or "the value"
    if what == "Number out of range":
        return "non_finite", f"{where} is too large to be a finite number"
    bound = _BOUND.match(what)
    if bound:
        return "out_of_range", f"{where} must be {bound['op']} {bound['bound']}{_unit(field)}"
    if what.startswith("Object missing required field"):
        missing = what.rsplit("`", 2)[1]
        return "schema", f"required field {field + '.' if field else ''}{missing} is missing"
    if what.startswith("Object contains unknown field"):
        extra = what.rsplit("`", 2)[1]
        return "schema", f"field {field + '.' if field else ''}{extra} is not part of the contract (unknown fields are refused so typos surface)"
    if what.startswith("Invalid enum value"):
        return "schema", f"{where} is not one of the allowed values"
    return "schema", f"{where}: {what}"


def _gate_items(headers: tuple) -> tuple | None:
    """The gate's own (name, value) pairs of ``headers`` in order, or None when any
    header is not a (str, value) pair (those are parsed, never looked up)."""
    ours = []
    for item in headers:
        if type(item) is not tuple or len(item) != 2 or type(item[0]) is not str:
            return None
        if item[0] in _GATE_HEADERS:
            ours.append(item)
    return tuple(ours)


class _TopicGate:
    """The checks for one raw topic: a cached typed decoder and header parse."""

    __slots__ = (
        "spec", "out_topic", "telemetry", "code", "decoder", "encoder", "purpose", "pseudo",
        "store", "max_bytes", "lateness_ms", "header_cache", "key_version", "vehicles", "claims_state", "inconsistency",
        "origin", "list_decoder", "gate_header_cache",
    )

    def __init__(self, spec: topics.TopicSpec, code: int, gate: Gate) -> None:
        self.spec = spec
        self.out_topic = topics.clean_name(spec.name)
        self.telemetry = spec.kind == "telemetry"
        self.code = bytes([code])
        self.decoder = msgspec.json.Decoder(spec.record)
        self.list_decoder = msgspec.json.Decoder(list[spec.record])
        self.inconsistency = _INCONSISTENCY.get(spec.record)
        self.origin = gate._origin
        self.encoder = gate._encoder
        self.purpose = gate.purpose
        self.pseudo = gate._pseudo
        self.store = gate._store
        self.max_bytes = gate._max_bytes
        self.lateness_ms = gate._lateness_ms
        self.key_version = gate._key_version
        self.header_cache: dict[tuple, _Headers | tuple[str, str]] = {}
        self.gate_header_cache: dict[tuple, _Headers | tuple[str, str]] = {}  # keyed by _gate_items
        # raw key -> (VIN, pseudonym, de-duplication key prefix, watermark key):
        # a fleet sends the same VINs all day, so each is parsed and hashed once
        self.vehicles: dict[bytes, tuple[str, bytes, bytes, bytes]] = {}
        # claims: one de-duplication scope per topic, no lateness
        self.claims_state = (b"e" + self.code + b"\x00", b"w" + self.code)

    def dlq_key(self, key: bytes | None) -> bytes | None:
        if not key:
            return None
        if not self.telemetry:
            return redact_vins(key)
        vin = normalise_vin(key.decode("ascii", "replace"))
        return (self.pseudo.vehicle_id(vin) if vin else self.pseudo.opaque(key)).encode()

    def headers(self, headers: Sequence[tuple[str, bytes]]) -> _Headers | tuple[str, str]:
        try:
            cache_key = tuple(headers)
            hit = self.header_cache.get(cache_key)
        except TypeError:  # unhashable header values: parse without caching
            return self._parse_headers(headers)
        if hit is None:
            # a producer's own headers (a send timestamp, a trace id) change from message to
            # message; the verdict depends only on ours, so look those up before parsing
            ours = _gate_items(cache_key)
            hit = self.gate_header_cache.get(ours) if ours is not None else None
            if hit is None:
                hit = self._parse_headers(headers)
                if ours is not None:
                    if len(self.gate_header_cache) >= _HEADER_CACHE_LIMIT:
                        self.gate_header_cache.clear()
                    self.gate_header_cache[ours] = hit
            if len(self.header_cache) >= _HEADER_CACHE_LIMIT:
                self.header_cache.clear()
            self.header_cache[cache_key] = hit
        return hit

    def _parse_headers(self, headers: Sequence[tuple[str, bytes]]) -> _Headers | tuple[str, str]:
        """Our headers as text, or (reason, detail). Other headers (tracing, ...) are ignored."""
        seen: dict[str, str] = {}
        for item in headers:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                return "bad_header", "a header is not a (name, value) pair"
            name, raw = item
            if isinstance(name, (bytes, bytearray)):
                name = bytes(name).decode("utf-8", "replace")
            if name not in _GATE_HEADERS:
                continue
            if name in seen:
                return "bad_header", f"header {name} is set more than once"
            if not isinstance(raw, (bytes, bytearray)):
                return "bad_header", f"header {name} has no value"
            try:
                seen[name] = bytes(raw).decode("ascii").strip()
            except UnicodeDecodeError:
                return "bad_header", f"header {name} is not ASCII text"
        required = ("schema_version", "source_protocol", "consent_scope") + (("coord_sys",) if self.telemetry else ())
        missing = [h for h in required if h not in seen]
        if missing:
            return "missing_header", f"header{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing"
        if seen["schema_version"] not in SCHEMA_VERSIONS:
            return "unknown_schema_version", f"schema_version {seen['schema_version'][:16]!r} is not supported by {self.spec.name}"
        protocol = seen["source_protocol"].lower()
        if not _SOURCE_PROTOCOL.fullmatch(protocol):
            return "bad_header", "header source_protocol must be a short token such as gbt32960-2025 or oem-json"
        coord_sys = seen.get("coord_sys", "WGS84").upper()
        if coord_sys not in COORD_SYSTEMS:
            return "bad_header", f"header coord_sys must be one of {', '.join(COORD_SYSTEMS)}"
        scopes = {s.strip().lower() for s in seen["consent_scope"].split(",") if s.strip()}
        if not scopes or not scopes <= set(CONSENT_SCOPES):
            return "bad_header", f"header consent_scope must be a comma list of {', '.join(CONSENT_SCOPES)}"
        if self.purpose not in scopes:
            return "no_consent", f"consent_scope {','.join(sorted(scopes))} does not cover {self.purpose}"
        out = (
            ("schema_version", seen["schema_version"].encode()),
            ("source_protocol", protocol.encode()),
            ("consent_scope", ",".join(s for s in CONSENT_SCOPES if s in scopes).encode()),
            ("key_version", str(self.key_version).encode()),
        )
        return _Headers(coord_sys, out)

    def check(self, key, value, headers, partition, offset, now_ms, ingest) -> Accepted | Rejected:
        try:
            if key is not None and type(key) is not bytes:  # bytearray/memoryview from some clients
                key = bytes(key)
            verdict = self._decide(key, value, headers, now_ms, ingest, partition, offset)
        except Exception as err:  # a gate bug must cost one record, never the worker
            try:
                dlq_key = self.dlq_key(key)
            except Exception:
                dlq_key = None
            verdict = ("internal_error", f"the gate failed on this record ({type(err).__name__})", dlq_key)
        if type(verdict) is Accepted:
            return verdict
        code, detail, dlq_key = verdict
        return reject(code, f"{self.spec.name} partition {partition} offset {offset}: {detail}", dlq_key, self.origin)

    def _decide(self, key, value, headers, now_ms, ingest, partition=-1, offset=-1) -> Accepted | tuple[str, str, bytes | None]:
        """An Accepted, or (reason code, detail, DLQ key). ``ingest`` is the
        ingest_ts_ms header for ``now_ms``, made once per batch."""
        if not value:
            return "empty_value", "the value is empty", self.dlq_key(key)
        if len(value) > self.max_bytes:
            return "payload_too_large", f"the value is {len(value)} bytes, over the {self.max_bytes}-byte limit", self.dlq_key(key)
        parsed = self.headers(headers)
        if type(parsed) is tuple:
            return parsed[0], parsed[1], self.dlq_key(key)
        if not key:
            return "empty_key", "the Kafka key is empty", None
        if self.telemetry:
            vehicle = self.vehicles.get(key)
            if vehicle is None:
                vehicle = self.vehicle(key)
                if vehicle is None:
                    return "bad_vin", "the Kafka key is not a 17-character VIN", self.dlq_key(key)
            dlq_key = vehicle[1]
        else:
            try:
                claim_id = key.decode("utf-8")
            except UnicodeDecodeError:
                claim_id = ""
            dlq_key = redact_vins(key)
            if not 0 < len(claim_id) <= _CLAIM_ID_MAX:
                return "bad_key", "the Kafka key is not a claim id", dlq_key
            out_key = key
        try:
            record = self.decoder.decode(value)
        except msgspec.ValidationError as err:
            # the typed decoder stops at the first bad field; broken JSON further
            # on is the more useful thing to report
            broken = _syntax_error(value)
            return (*(broken or _explain(err)), dlq_key)
        except (msgspec.DecodeError, UnicodeDecodeError) as err:
            return (*(_syntax_error(value) or ("malformed_json", f"the value is not valid JSON ({err})")), dlq_key)
        if self.telemetry:
            return self.judge(record, parsed, vehicle, now_ms, ingest, partition, offset)
        problem = _future_ts(record, now_ms)
        if problem is not None:
            return (*problem, dlq_key)
        if record.claim_id != claim_id:
            return "key_mismatch", "the Kafka key differs from claim_id", dlq_key
        problem = self.inconsistency(record)
        if problem is None:
            record, problem = _pseudonymise_parties(record, self.pseudo)
        if problem is not None:
            return (*problem, dlq_key)
        record = _to_wgs84(record, parsed.coord_sys)
        event_prefix, water_key = self.claims_state
        problem = self.seen(event_prefix, water_key, record.event_id, record.ts_ms, partition, offset)
        if problem is not None:
            return (*problem, dlq_key)
        return Accepted(self.out_topic, out_key, self.encoder.encode(record), [*parsed.out, ingest], record)

    def judge(self, record, parsed: _Headers, vehicle: tuple[str, bytes, bytes, bytes], now_ms: int, ingest,
              partition: int, offset: int, out_headers: list | None = None) -> Accepted | tuple[str, str, bytes | None]:
        """The record-level checks of a decoded telemetry record (its envelope passed);
        ``out_headers`` is the clean headers list, shared by a batch message's records."""
        vin, out_key, event_prefix, water_key = vehicle
        problem = (_future_ts(record, now_ms) or (self.inconsistency and self.inconsistency(record))
                   or _vin_in_event_id(record, vin))
        if problem is not None:
            return (*problem, out_key)
        record = _to_wgs84(record, parsed.coord_sys)
        problem = self.seen(event_prefix, water_key, record.event_id, record.ts_ms, partition, offset)
        if problem is not None:
            return (*problem, out_key)
        return Accepted(self.out_topic, out_key, self.encoder.encode(record),
                        out_headers if out_headers is not None else [*parsed.out, ingest], record)

    def envelope(self, key, value: bytes, headers, max_records: int) -> tuple[_Headers, tuple, list] | None:
        """(headers, vehicle, records) of a telemetry batch message (a JSON array of one
        vehicle's records) whose headers and key pass and whose records all decode, with
        one typed decode of the whole array; None when the message needs the per-record
        path to name what is wrong."""
        if not self.telemetry or not key or len(value) > self.max_bytes:
            return None
        parsed = self.headers(headers)
        if type(parsed) is tuple:
            return None
        if type(key) is not bytes:
            key = bytes(key)
        vehicle = self.vehicles.get(key) or self.vehicle(key)
        if vehicle is None:
            return None
        try:
            records = self.list_decoder.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            return None
        if not records or len(records) > max_records:
            return None
        return parsed, vehicle, records

    def check_array(self, envelope: tuple[_Headers, tuple, list], partition: int, offset: int, now_ms: int,
                    ingest) -> list[Accepted | Rejected]:
        """Verdicts for the records of a batch message whose ``envelope`` passed, in one
        pass: the record-level checks of each (both paths give the same verdicts)."""
        parsed, vehicle, records = envelope
        where = f"{self.spec.name} partition {partition} offset {offset}: "
        out: list[Accepted | Rejected] = []
        out_headers = [*parsed.out, ingest]
        for record in records:
            try:
                verdict = self.judge(record, parsed, vehicle, now_ms, ingest, partition, offset, out_headers)
            except Exception as err:  # a gate bug must cost one record, never the worker
                verdict = ("internal_error", f"the gate failed on this record ({type(err).__name__})", vehicle[1])
            out.append(verdict if type(verdict) is Accepted else reject(verdict[0], where + verdict[1], verdict[2], self.origin))
        return out

    def pass_array(self, envelope: tuple[_Headers, tuple, list], partition: int, offset: int, now_ms: int,
                   ingest) -> Passed | None:
        """A batch message (its ``envelope`` passed) whose records all pass, decided with
        checks over the whole message instead of a verdict per record: a ``Passed``, with
        the de-duplication store updated as ``seen`` would have for each record. None
        when any record might fail a check: the message then goes the per-record way
        (``check_array``), which names what failed; nothing is written to the store
        before every check has passed, so both ways give the same outputs and leave the
        same state."""
        parsed, vehicle, records = envelope
        vin, out_key, event_prefix, water_key = vehicle
        stamps = list(map(_TS_OF, records))
        oldest, top = min(stamps), max(stamps)
        if top > now_ms + MAX_FUTURE_MS:
            return None
        if self.inconsistency is not None and any(map(self.inconsistency, records)):
            return None
        ids = list(map(_EVENT_ID_OF, records))
        # one search over all ids: the separator is neither a VIN character nor alphanumeric,
        # so a VIN is found in the joined text exactly when it is in one of the ids
        joined = "\n".join(ids)
        if vin in joined.upper() or contains_vin(joined) or len(set(ids)) != len(ids):
            return None
        store = self.store
        keys = [event_prefix + i.encode("utf-8", "surrogatepass") for i in ids]
        holds_any = getattr(store, "holds_any", None)
        if holds_any(keys) if holds_any is not None else any(store.get(k) is not None for k in keys):
            return None  # a duplicate or a replay: the per-record way tells them apart
        packed = store.get(water_key)
        newest = _TS.unpack(packed)[0] if packed is not None else None
        # no record is late when the oldest is within the lateness of the newest time seen
        # before any of them (each record is compared with the newest before it, never later)
        if oldest < (top if newest is None else max(newest, top)) - self.lateness_ms:
            return None
        if parsed.coord_sys == "GCJ02":
            records = [_to_wgs84(r, "GCJ02") for r in records]
        pack = _EV.pack
        store.update(zip(keys, [pack(ts, partition, offset) for ts in stamps]))
        if newest is None or top > newest:
            store[water_key] = _TS.pack(top)
        return Passed(self.out_topic, out_key, self.encoder.encode(records)[1:-1], [*parsed.out, ingest], records, top)

    def vehicle(self, key: bytes) -> tuple[str, bytes, bytes, bytes] | None:
        """Parse and pseudonymise a telemetry key once; None when not a VIN."""
        vin = normalise_vin(key.decode("ascii", "replace"))
        if vin is None:
            return None
        pid = self.pseudo.vehicle_id(vin).encode()
        vehicle = (vin, pid, b"e" + self.code + bytes([len(pid)]) + pid, b"w" + self.code + pid)
        if len(self.vehicles) >= _VEHICLE_CACHE_LIMIT:
            self.vehicles.clear()
        self.vehicles[key] = vehicle
        return vehicle

    def seen(self, event_prefix: bytes, water_key: bytes, event_id: str, ts_ms: int,
             partition: int = -1, offset: int = -1) -> tuple[str, str] | None:
        """Duplicate/late check, then record the event. Keys: ``w`` + topic code +
        id -> newest ts_ms; ``e`` + topic code + len(id) + id + event id -> ts_ms,
        source partition, source offset.

        The same event read again from the same partition and offset is not a
        duplicate but a replay after a worker crash (its first verdict may never
        have reached Kafka): it is accepted again, and the ReplacingMergeTree
        collapses the copy if the first one did arrive."""
        store = self.store
        event_key = event_prefix + event_id.encode("utf-8", "surrogatepass")
        first = store.get(event_key)
        if first is not None:
            if offset < 0 or len(first) != _EV.size or _EV.unpack(first)[1:] != (partition, offset):
                return "duplicate", f"event_id {event_id!r} was already accepted"
            return None
        packed = store.get(water_key)
        newest = _TS.unpack(packed)[0] if packed is not None else None
        if self.telemetry and newest is not None and ts_ms < newest - self.lateness_ms:
            return "late", f"ts_ms {ts_ms} is {newest - ts_ms} ms behind the vehicle's newest event (limit {self.lateness_ms} ms)"
        store[event_key] = _EV.pack(ts_ms, partition, offset)
        if newest is None or ts_ms > newest:
            store[water_key] = _TS.pack(ts_ms)
        return None


_TS = struct.Struct(">q")
_EV = struct.Struct(">qiq")  # ts_ms, source partition, source offset
_TS_OF, _EVENT_ID_OF = attrgetter("ts_ms"), attrgetter("event_id")


def _state_inconsistency(record: rec.StateV1) -> tuple[str, str] | None:
    if record.cell_voltage_min_v > record.cell_voltage_max_v:
        return "inconsistent", "cell_voltage_min_v is above cell_voltage_max_v"
    if record.cell_temp_min_c > record.cell_temp_max_c:
        return "inconsistent", "cell_temp_min_c is above cell_temp_max_c"
    return None


def _claim_inconsistency(record: rec.FnolV1) -> tuple[str, str] | None:
    if record.loss_ts_ms > record.ts_ms + MAX_FUTURE_MS:
        return "inconsistent", "loss_ts_ms (the accident) is after ts_ms (the report)"
    return None


# cross-field checks per record type: fields that are each in range but contradict each other
_INCONSISTENCY = {rec.StateV1: _state_inconsistency, rec.FnolV1: _claim_inconsistency}


def _future_ts(record: msgspec.Struct, now_ms: int) -> tuple[str, str] | None:
    if record.ts_ms > now_ms + MAX_FUTURE_MS:
        return "future_ts", f"ts_ms {record.ts_ms} is more than {MAX_FUTURE_MS // 60_000} min in the future"
    return None


def _to_wgs84(record: msgspec.Struct, coord_sys: str) -> msgspec.Struct:
    """The record with its position in WGS-84 (converted when the carmaker sent GCJ-02)."""
    if coord_sys != "GCJ02":
        return record
    lat, lon = gcj02_to_wgs84(record.lat, record.lon)
    return msgspec.structs.replace(record, lat=lat, lon=lon)


def _vin_in_event_id(record: msgspec.Struct, vin: str) -> tuple[str, str] | None:
    if vin in record.event_id.upper():
        return "vin_in_value", "event_id contains the vehicle's VIN, which would leave the gate in clear"
    if contains_vin(record.event_id):  # another vehicle's VIN would leak just the same
        return "vin_in_value", "event_id contains a VIN, which would leave the gate in clear"
    return None


def _pseudonymise_parties(claim: rec.FnolV1, pseudo: Pseudonymiser) -> tuple[rec.FnolV1, tuple[str, str] | None]:
    """Replace each party's VIN by its pseudonym; refuse a claim with a VIN
    anywhere else (a party's, or any VIN-shaped text), since it would pass the
    gate in clear."""
    vins: list[str] = []
    parties = []
    for i, party in enumerate(claim.parties):
        if party.vehicle_id is None:
            parties.append(party)
            continue
        vin = normalise_vin(party.vehicle_id)
        if vin is None:
            return claim, ("bad_vin", f"parties[{i}].vehicle_id is not a 17-character VIN")
        vins.append(vin)
        parties.append(msgspec.structs.replace(party, vehicle_id=pseudo.vehicle_id(vin)))
    texts = [(name, getattr(claim, name)) for name in _CLAIM_TEXT]
    for i, party in enumerate(claim.parties):
        texts += [(f"parties[{i}].{name}", getattr(party, name)) for name in _PARTY_TEXT]
    for name, text in texts:
        if text and (contains_vin(text) or any(vin in text.upper() for vin in vins)):
            return claim, ("vin_in_value", f"{name} contains a VIN, which would leave the gate in clear")
    return (msgspec.structs.replace(claim, parties=parties) if vins else claim), None


_CLAIM_TEXT = ("event_id", "claim_id", "policy_id", "garage", "tow_company", "lawyer", "clinic", "description")
_PARTY_TEXT = ("name", "phone", "address", "bank_account", "plate")


class Gate:
    """Validates, pseudonymises and de-duplicates raw topic messages.

    ``dedupe_store`` holds per-vehicle watermarks and recent event ids; pass a
    persistent mapping (rocksdict) so restarts keep them. Entries older than the
    lateness horizon are swept as event time advances, so it holds at most about
    two lateness horizons of event ids.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        purpose: str = "pricing",
        dedupe_store: MutableMapping[bytes, bytes] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if purpose not in CONSENT_SCOPES:
            raise ValueError(f"purpose {purpose!r} is not one of {', '.join(CONSENT_SCOPES)}")
        self.purpose = purpose
        self._origin = (settings.worker_app_id, purpose)
        self._clock = clock
        self._store: MutableMapping[bytes, bytes] = {} if dedupe_store is None else dedupe_store
        self._key_version = settings.pseudonym_key_version
        self._pseudo = Pseudonymiser(settings.pseudonym_key.get_secret_value().encode(), settings.pseudonym_key_version)
        self._max_bytes = settings.max_payload_bytes
        self._lateness_ms = settings.lateness_ms
        self._sweep_every_ms = max(settings.lateness_ms, _MIN_SWEEP_INTERVAL_MS)
        self._next_sweep_ms: int | None = None
        self._sweep_from: bytes | None = None  # the key the sweep under way goes on from (None: no sweep under way)
        # (topic code, partition) -> committed offset, once the consumer reports commits (``committed``)
        self._committed: dict[tuple[bytes, int], int] | None = None
        self._encoder = msgspec.json.Encoder()
        self._topics = {spec.name: _TopicGate(spec, code, self) for code, spec in enumerate(topics.RAW)}
        self._by_code = {gate.code: gate for gate in self._topics.values()}

    @property
    def max_payload_bytes(self) -> int:
        return self._max_bytes

    @property
    def origin(self) -> tuple[str, str]:
        return self._origin

    def check(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]],
        partition: int, offset: int,
    ) -> Accepted | Rejected:
        """Decide one message. Never raises on any input."""
        return self.check_batch(topic, ((key, value, headers, partition, offset),))[0]

    def check_batch(
        self, topic: str, msgs: Sequence[tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]], int, int]],
    ) -> list[Accepted | Rejected]:
        """Decide a batch of (key, value, headers, partition, offset) from one topic, in order."""
        gate = self._topics.get(topic)
        if gate is None:
            known = ", ".join(t.name for t in topics.RAW)
            return [
                reject("unknown_topic", f"{topic} is not a raw topic (expected one of {known})",
                       self._pseudo.opaque(key).encode() if key else None, self._origin)
                for key, _, _, _, _ in msgs
            ]
        now_ms, ingest = self._stamp()
        out = [gate.check(key, value, headers, partition, offset, now_ms, ingest)
               for key, value, headers, partition, offset in msgs]
        self._after(max((a.record.ts_ms for a in out if type(a) is Accepted), default=None), len(out))
        return out

    def check_arrays(self, topic: str, msgs: Sequence[tuple], max_records: int,
                     whole: bool = False) -> dict[int, list[Accepted | Rejected] | Passed]:
        """The fast path for telemetry batch messages: {message index: verdict per
        record} for those decided in one pass (see ``_TopicGate.check_array``); the
        others go through ``check_batch`` record by record. ``whole``: a message all of
        whose records pass is decided faster still, as one ``Passed`` instead of a
        verdict per record (``_TopicGate.pass_array``); messages are decided in order."""
        gate = self._topics.get(topic)
        if gate is None or not gate.telemetry:
            return {}
        now_ms, ingest = self._stamp()
        decided: dict[int, list[Accepted | Rejected] | Passed] = {}
        stamps: list[int] = []  # event times of what was accepted, for the sweep
        records = 0
        for mi, (key, value, headers, partition, offset) in enumerate(msgs):
            envelope = gate.envelope(key, value, headers, max_records) if value and value[:1] == b"[" else None
            if envelope is None:
                continue
            if whole:
                try:
                    passed = gate.pass_array(envelope, partition, offset, now_ms, ingest)
                except Exception:  # a gate bug: the per-record way decides, and costs at most the records it hits
                    passed = None
                if passed is not None:
                    decided[mi] = passed
                    stamps.append(passed.newest_ts_ms)
                    records += len(passed.records)
                    continue
            decided[mi] = verdicts = gate.check_array(envelope, partition, offset, now_ms, ingest)
            stamps.extend(a.record.ts_ms for a in verdicts if type(a) is Accepted)
            records += len(verdicts)
        if decided:
            self._after(max(stamps, default=None), records)
        return decided

    def _stamp(self) -> tuple[int, tuple[str, bytes]]:
        """The batch's clock and its ingest_ts_ms header, made once per batch."""
        now_ms = int(self._clock() * 1000)
        return now_ms, ("ingest_ts_ms", str(now_ms).encode())

    def _after(self, newest: int | None, records: int) -> None:
        """After a batch of ``records`` records: its ids made durable; as event time (the
        newest accepted ``newest``) advances, a sweep of expired ids starts, and a sweep
        under way goes on by a slice proportional to the batch (so the sweep keeps up with
        what the batches add, and no batch waits for a pass over the whole store)."""
        flush = getattr(self._store, "flush", None)
        if flush is not None:  # a write-back store: this batch's ids are durable before its outputs leave
            flush()
        if newest is not None:
            if self._next_sweep_ms is None:
                self._next_sweep_ms = newest + self._sweep_every_ms
            elif newest >= self._next_sweep_ms:
                if self._sweep_from is None:
                    self._sweep_from = b"e"
                self._next_sweep_ms = newest + self._sweep_every_ms
        if self._sweep_from is not None:
            self._sweep_from, _ = self.sweep_slice(self._sweep_from, max(_SWEEP_MIN_SLICE, _SWEEP_KEYS_PER_RECORD * records))

    def committed(self, topic: str, partition: int, offset: int) -> None:
        """The consumer committed ``offset`` (the next to read) on a raw topic's partition.
        Once told of commits, the sweep forgets only ids read below the committed offsets
        (of the partitions it was told of: ids of others, left by an earlier owner, expire as before):
        a record whose outputs are not acknowledged yet is read again after a failure, and
        its id must still be there to let it through as the same record (forgotten, it
        would be refused as late if its vehicle's newest event moved past the lateness)."""
        gate = self._topics.get(topic)
        if gate is not None:
            if self._committed is None:
                self._committed = {}
            self._committed[(gate.code, partition)] = offset

    def sweep(self) -> int:
        """Forget every event id older than its vehicle's newest event minus the
        lateness (those would be refused as late anyway), in one go. Returns how many."""
        forgotten, start = 0, b"e"
        while start is not None:
            start, n = self.sweep_slice(start, 10_000)
            forgotten += n
        return forgotten

    def sweep_slice(self, start: bytes, limit: int) -> tuple[bytes | None, int]:
        """Look at up to ``limit`` event-id keys from ``start`` on and forget the expired
        ones; (the key to go on from, or None when the ids are done; how many forgotten)."""
        store = self._store
        items_from = getattr(store, "items_from", None)
        items = items_from(start, limit + 1) if items_from is not None else sorted(
            kv for kv in store.items() if kv[0] >= start)[:limit + 1]
        newest: dict[bytes, int | None] = {}  # per vehicle and topic: its watermark, read once a slice
        committed = self._committed
        expired, following = [], None
        for i, (k, v) in enumerate(items):
            if k[:1] != b"e":
                break
            if i == limit:
                following = k
                break
            if len(k) < 3 or k[1:2] not in self._by_code:
                continue
            water_key = b"w" + k[1:2] + k[3:3 + k[2]]
            if water_key not in newest:
                packed = store.get(water_key)
                newest[water_key] = None if packed is None else _TS.unpack(packed)[0]
            mark = newest[water_key]
            if mark is not None and _TS.unpack_from(v)[0] < mark - self._lateness_ms:
                if committed is not None and len(v) == _EV.size:
                    _, partition, offset = _EV.unpack(v)
                    mark_of = committed.get((k[1:2], partition))
                    if offset >= 0 and mark_of is not None and offset >= mark_of:
                        continue  # read but not committed: a failure reads it again
                expired.append(k)
        for k in expired:
            del store[k]
        return following, len(expired)


def dlq_message(
    rejected: Rejected,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    *,
    max_value_bytes: int = WorkerSettings.model_fields["max_payload_bytes"].default,
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of the ``voltrisk.dlq.v1`` record for a refusal.

    The value is the original bytes, cut to ``max_value_bytes``, with anything
    VIN-shaped masked; the key is the gate's pseudonymised key (or, for a
    ``Rejected`` made elsewhere, the source key with VINs masked). The producer's
    own headers follow as ``source_header.<name>``, masked and cut to 256 bytes.
    """
    original = value or b""
    out_key = rejected.key if rejected.key is not None else (redact_vins(key) if key else None)
    # mask a little past the cut so a VIN straddling it is caught before cutting
    out_value = redact_vins(original[: max_value_bytes + 17])[:max_value_bytes]
    out_headers = [
        ("source_topic", topic.encode("utf-8", "replace")),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
        ("error_class", rejected.error_class.encode()),
        ("reason", rejected.reason.encode()),
        ("message", redact_vins(rejected.message.encode("utf-8", "replace"))),
        ("source_value_bytes", str(len(original)).encode()),
    ]
    if rejected.gate_app_id:
        out_headers += [("gate_app_id", rejected.gate_app_id.encode()), ("gate_purpose", rejected.gate_purpose.encode())]
    for item in list(headers)[:_DLQ_SOURCE_HEADERS_MAX]:
        try:
            name, raw = item
            out_headers.append((f"source_header.{name}"[:128], redact_vins(bytes(raw or b"")[:_DLQ_SOURCE_HEADER_BYTES])))
        except (TypeError, ValueError):
            continue
    return out_key, out_value, out_headers
