"""Byte-level fuzzer of the worker's gate step (``stream.agents.gate_batch``).

Mutation-based: seeds are the contract examples of every raw topic, alone and as
batch arrays; each round flips, inserts, deletes or splices bytes of a seed's value,
key or a header, sometimes several times, and sends a small batch of such messages
through one long-lived gate (so duplicates and lateness state build up). Every round
is checked by ``stream.fuzzing.account``: no exception, every record accepted or
dead-lettered with a known reason, no raw VIN in any output. Prints one JSON object.

    .venv/bin/python bench/fuzz_gate.py --seconds 60 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections import Counter

import msgspec

from contracts.examples import EXAMPLE_TS_MS, RAW_EXAMPLES
from stream.fuzzing import account, records_in
from stream.gate import Gate
from voltrisk.settings import WorkerSettings

INTERESTING = [b"\x00", b"\xff", b"NaN", b"1e999", b"-", b'"', b"\\u0000", b"[", b"]", b"{", b"}", b",", b"null",
               b"9" * 25, b"LFZTEST0000000001", b"\xe4\xb8\xad"]


# the raw VINs of the seeds: telemetry keys and the claim's parties
VINS = sorted({RAW_EXAMPLES[t].key.encode() for t in RAW_EXAMPLES if t.startswith("ev.")}
              | {p.vehicle_id.encode() for p in RAW_EXAMPLES["claims.fnol.v1"].record.parties if p.vehicle_id})


def seeds() -> list[tuple[str, bytes, bytes, list]]:
    out = []
    for topic, ex in RAW_EXAMPLES.items():
        one = msgspec.json.encode(ex.record)
        headers = [(k, v.encode()) for k, v in ex.headers.items()]
        out.append((topic, ex.key.encode(), one, headers))
        if topic.startswith("ev."):
            many = [msgspec.json.encode(msgspec.structs.replace(ex.record, event_id=f"s-{i}", ts_ms=ex.record.ts_ms + i))
                    for i in range(5)]
            out.append((topic, ex.key.encode(), b"[" + b",".join(many) + b"]", headers))
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        op = rng.randrange(5)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = rng.choice(INTERESTING)
        elif op == 2 and b:
            del b[pos:pos + rng.randrange(1, 16)]
        elif op == 3 and b:
            start = rng.randrange(len(b))
            b[pos:pos] = b[start:start + rng.randrange(1, 32)]
        else:
            b[pos:pos] = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(1, 8)))
    return bytes(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    pool = seeds()
    gate = Gate(WorkerSettings(), clock=lambda: EXAMPLE_TS_MS / 1000 + 3600)
    outcomes: Counter = Counter()
    rounds = records = crashes = 0
    first_crash = None
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        topic = rng.choice(pool)[0]
        msgs = []
        for offset in range(rng.randrange(1, 6)):
            _, key, value, headers = rng.choice([p for p in pool if p[0] == topic])
            part = rng.randrange(4)
            if part == 0:
                key = mutate(rng, key) if rng.random() < 0.8 else None
            elif part == 1 and headers:
                i = rng.randrange(len(headers))
                headers = headers[:i] + [(headers[i][0], mutate(rng, headers[i][1]))] + headers[i + 1:]
            else:
                value = mutate(rng, value)
            msgs.append((key, value, headers, 0, rounds * 8 + offset))
        rounds += 1
        records += sum(records_in(m[1]) for m in msgs)
        try:
            outcomes.update(account(gate, topic, msgs, VINS))
        except Exception:  # a crash or an accounting failure: reported, the fuzzing goes on
            crashes += 1
            if first_crash is None:
                first_crash = {"topic": topic, "messages": [repr(m[:3]) for m in msgs], "error": traceback.format_exc(limit=3)}
    print(json.dumps({"bench": "fuzz.gate_batch", "seconds": args.seconds, "seed": args.seed, "rounds": rounds,
                      "records": records, "accepted": outcomes.pop("accepted", 0), "dead_lettered": dict(outcomes.most_common()),
                      "crashes": crashes, "first_crash": first_crash}))
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
