"""Accounting of the worker's gate step (``stream.agents.gate_batch``) for fuzzing.

Every record that enters must leave exactly once: in a clean message (a JSON object
or array) or as a dead letter with a reason from ``stream.gate.REASONS``; a raw VIN
must not appear as a token of its own in any output (the dead-letter masking rule).
``account`` checks one batch and returns what happened; the hypothesis tests
(tests/gate/test_gate_fuzz_batches.py) and the byte fuzzer (bench/fuzz_gate.py) share it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import msgspec

from stream import topics as T
from stream.agents import MAX_RECORDS_PER_MESSAGE, gate_batch
from stream.gate import REASONS, Gate

_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


def records_in(value: bytes | None) -> int:
    """How many records the worker sees in a raw message value (a batch is an array)."""
    if value and value[:1] == b"[":
        try:
            return max(1, len(_raw_list.decode(value)))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return 1
    return 1


def account(gate: Gate, topic: str, msgs: Sequence[tuple], vins: Sequence[bytes] = ()) -> Counter:
    """Run ``gate_batch`` and check its accounting; returns counts by outcome
    (``accepted`` and one entry per dead-letter reason). Raises AssertionError with
    the inputs' summary when a record is lost, doubled, or a VIN leaks."""
    outs = gate_batch(gate, topic, msgs)
    counts: Counter = Counter()
    expected = sum(records_in(m[1]) for m in msgs)
    covered = 0
    for o in outs:
        blob = (o.key or b"") + o.value + b"".join(v for _, v in o.headers)
        # a VIN as a token of its own (the masking rule: inside a longer alphanumeric run it is not VIN-shaped)
        leaked = [v for v in vins if v and re.search(rb"(?<![A-Za-z0-9])" + re.escape(v) + rb"(?![A-Za-z0-9])", blob, re.I)]
        assert not leaked, f"VIN {leaked[0]!r} left the gate on {o.topic}"
        if o.topic == T.DLQ.name:
            h = dict(o.headers)
            reason = h.get("reason", b"").decode()
            assert reason in REASONS, f"dead letter without a known reason: {h}"
            if reason == "payload_too_large" and "source_index" not in h and b"the batch holds" in h.get("message", b""):
                covered += int(h["message"].split(b"the batch holds ")[1].split(b" ")[0])  # a whole oversized batch
            else:
                covered += 1
            counts[reason] += 1
        else:
            assert o.topic == T.clean_name(topic), f"output on {o.topic} for {topic}"
            n = len(_raw_list.decode(o.value)) if o.value[:1] == b"[" else 1
            assert n <= MAX_RECORDS_PER_MESSAGE
            covered += n
            counts["accepted"] += n
    assert covered == expected, f"{expected} records in, {covered} out ({dict(counts)})"
    return counts
