"""Offline validation: the workers' gate over a JSON-lines file.

A carmaker checks a sample export before producing a single message; the
verdicts are the gate's own, so "ok" here means accepted by the workers (given
the same settings and the vehicle's history within the file).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec

from stream.gate import Accepted, Gate
from voltrisk.settings import WorkerSettings


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """``{"key": ..., "headers": {...}, "value": ...}``. ``Raw`` keeps the value's
    exact bytes: decoding and re-encoding it could change what the gate sees."""

    value: msgspec.Raw
    key: str | None = None
    topic: str | None = None  # simulator files mix topics; --topic selects which lines apply
    # header values are text on the wire; a bare number (schema_version: 1) means its text
    headers: dict[str, str | int | float] = {}


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_TEXT = msgspec.json.Decoder(str)


def _message(line: bytes, key: str | None, headers: dict[str, str]) -> tuple[bytes | None, bytes | None, dict[str, str], str | None]:
    """(key, value, headers, envelope topic) that a producer following this line would send."""
    try:
        envelope = _ENVELOPE.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return (key.encode() if key is not None else None), line, headers, None
    raw = bytes(envelope.value)
    if raw == b"null":
        value = None
    elif raw.startswith(b'"'):  # the raw message text, e.g. to test malformed JSON
        value = _TEXT.decode(raw).encode("utf-8", "surrogatepass")
    else:
        value = raw
    key = envelope.key if envelope.key is not None else key
    return ((key.encode() if key is not None else None), value,
            {**headers, **{k: str(v) for k, v in envelope.headers.items()}}, envelope.topic)


def validate_lines(
    lines: Iterable[bytes], topic: str, key: str | None, headers: dict[str, str], purpose: str = "pricing",
    settings: WorkerSettings | None = None,
) -> Iterator[dict]:
    """One ``{"line", "ok", "reason", "error_class", "message"}`` per non-blank line; a
    line holding a batch message (a JSON array) gives one per record, with ``record``
    its position in the array."""
    gate = Gate(settings or WorkerSettings(), purpose=purpose)
    prefix = f"{topic} partition 0 offset "
    for number, line in enumerate(lines, start=1):
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        k, value, h, line_topic = _message(line, key, headers)
        if line_topic is not None and line_topic != topic:
            continue
        header_list = [(name, v.encode()) for name, v in h.items()]
        if value and value[:1] == b"[":  # a batch message: the worker's own step decides it
            yield from _batch(gate, topic, k, value, header_list, number, prefix)
            continue
        verdict = gate.check(topic, k, value, header_list, 0, number)
        if type(verdict) is Accepted:
            yield {"line": number, "ok": True, "reason": None}
        else:
            message = verdict.message.replace(f"{prefix}{number}: ", f"line {number}: ", 1)
            yield {"line": number, "ok": False, "reason": verdict.reason, "error_class": verdict.error_class,
                   "message": message}


def _batch(gate: Gate, topic: str, key: bytes | None, value: bytes, headers: list, number: int,
           prefix: str) -> Iterator[dict]:
    """The verdicts of a batch message (a JSON array of one vehicle's records) as the
    worker gives them (``stream.agents.gate_batch``): one result per record, with its
    position in the array, or one for the line when the message is refused whole (not
    an array of records, or too many of them)."""
    from stream.agents import gate_batch
    from stream.fuzzing import records_in
    from stream.topics import DLQ

    dead = [dict(o.headers) for o in gate_batch(gate, topic, [(key, value, headers, 0, number)]) if o.topic == DLQ.name]
    by_index = {int(h["source_index"]): h for h in dead if "source_index" in h}
    if len(by_index) < len(dead):  # refused as a whole (a dead letter without a record's position)
        h = dead[0]
        message = h["message"].decode("utf-8", "replace").replace(f"{prefix}{number}: ", f"line {number}: ", 1)
        yield {"line": number, "ok": False, "reason": h["reason"].decode(), "error_class": h["error_class"].decode(),
               "message": message}
        return
    for i in range(records_in(value)):
        h = by_index.get(i)
        if h is None:
            yield {"line": number, "record": i, "ok": True, "reason": None}
            continue
        message = h["message"].decode("utf-8", "replace").replace(f"{prefix}{number}: ", f"line {number} record {i}: ", 1)
        yield {"line": number, "record": i, "ok": False, "reason": h["reason"].decode(),
               "error_class": h["error_class"].decode(), "message": message}
