"""The live fraud engine: a batch of FNOL claims in, ranked alerts out.

The Faust agent calls ``FraudEngine(state_path).process(claims, telemetry)`` per
``take()`` batch. Each call adds the claims to the entity graph, re-scores every
claim of the rings they touched (a ring's old claims get riskier as it grows),
and returns an alert for each claim at or above the threshold that was never
alerted, or whose ring grew by at least a quarter since its last alert. An alert
names at most ``MAX_ALERT_MEMBERS`` of its ring's claims, the ones nearest to it.

Before ``process`` returns, what it changed is appended to a journal beside
``state_path`` and fsynced (cost grows with the batch, not with the graph); every
``snapshot_every`` claims the whole state is written atomically to ``state_path``
and the journal restarts. A restarted worker loads the snapshot, replays the
journal (a torn last entry from a crash is ignored) and carries on with the same
graph and without re-alerting. Replaying an entry twice changes nothing.

The alerts of a call are journaled with its claims and stay *unsent* until the caller
``confirm``s that Kafka took them: after a crash or a failed send they come back from
``unsent_alerts`` to be sent again (a repeat has the same alert id and version, which
the warehouse keeps once). Without that, the redelivered claims would be ignored as
known and their alerts lost.

Investigators' decisions (``fraud.decisions.v1``) come in through ``decide`` and are
journaled like claims: per claim the latest. A confirmation reaches the rest of the
ring: each of the ``MAX_ALERT_MEMBERS`` claims nearest the confirmed one that has no
decision of its own, and whose last alert (if any) named fewer confirmations, is alerted
at once, whatever its score. A new claim that joins a ring holding a claim confirmed as
fraud is alerted the same way. Such alerts say so first among their reasons and are
ranked first. A claim with a decision of its own (under investigation, dismissed) is
left alone; a dismissed claim is alerted again only by the re-alert rule, as any other.
"""

from __future__ import annotations

import math
import os
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import msgspec
import numpy as np

from fraudring.features import claim_features
from fraudring.graph import ClaimGraph, ClaimLinks, links_from_fnol
from fraudring.model import FraudModel, reasons
from fraudring.rows import claim_row, entity_rows
from fraudring.verify import NO_TELEMATICS, TelematicsFacts, Verification, cell_of, facts_from_telemetry, judge
from stream.records import CrashV1, DecisionV1, DynamicsV1, FnolV1, StateV1

Telemetry = TelematicsFacts | Sequence[StateV1 | DynamicsV1 | CrashV1]

# An alert names at most this many of its ring's claims: the alerted claim and those
# nearest to it in the graph (what an investigator looks at first, and what stays the
# same as a far end of the ring grows). A ring grows without bound through chains of
# shared entities, and past ~45k claim ids one alert outgrew Kafka's 1 MB message; 200
# ids of up to 64 characters stay under 14 kB, and are about as many claims as the
# triage page's ring graph can still draw. ``ring_claims`` keeps the true size.
MAX_ALERT_MEMBERS = 200
# A claim alerted before is alerted again once its ring has grown by this factor since:
# each claim is then alerted O(log n) times while its ring grows to n claims, not n
# times (every member on every new claim made the alerts of a ring O(n^2) in count and,
# with the members list, in bytes). A ring of 3 growing to 4 still counts as grown.
REALERT_GROWTH = 1.25
ALERT_PREFIX = "alert-"  # a claim's alert id: the prefix and the claim id


def _realert(last_ring_claims: int, ring_claims: int) -> bool:
    """Whether a claim above the threshold is alerted (again): never alerted
    (``last_ring_claims`` 0), or its ring grew by ``REALERT_GROWTH`` since its last alert."""
    return ring_claims >= max(last_ring_claims + 1, math.ceil(REALERT_GROWTH * last_ring_claims))


class _Known(msgspec.Struct, array_like=True):
    loss_ts_ms: int
    facts: TelematicsFacts
    evidence: list[str]
    alerted_ring_claims: int = 0  # ring size at the last alert; 0 = never alerted
    alerted_confirmed: int = 0  # claims of its ring confirmed as fraud, as its last alert said


class _Decision(msgspec.Struct, array_like=True):
    """An investigator's decision on a claim's alert (``DecisionV1``): what the engine keeps of it."""

    claim_id: str
    status: str  # DecisionV1.status: new, investigating, confirmed, dismissed
    ts_ms: int  # when it was decided (the dashboard's clock)
    event_id: str

    def after(self, other: _Decision | None) -> bool:
        """Whether this decision is the later one (the event id breaks a tie of times)."""
        return other is None or (self.ts_ms, self.event_id) > (other.ts_ms, other.event_id)


class _EngineState(msgspec.Struct):
    graph: bytes
    claims: dict[str, _Known]
    unsent: dict[str, dict] = {}  # alert id -> alert, until confirmed sent
    last_version: int = 0  # the newest alert version given: the next is above it, whatever the clock says
    unsent_claims: dict[str, dict] = {}  # claim id -> its warehouse rows (``claim_rows``), until confirmed sent
    decisions: dict[str, _Decision] = {}  # claim id -> the latest decision on its alert


class _JournalEntry(msgspec.Struct, array_like=True):
    added: list[tuple[ClaimLinks, _Known]]
    alerted: dict[str, int]  # claim id -> ring size at this alert
    alerts: list[dict] = []  # this call's alerts (unsent until confirmed)
    sent: list[tuple[str, int]] = []  # (alert id, version) confirmed sent
    claim_rows: list[dict] = []  # this call's claims' warehouse rows (unsent until confirmed)
    claims_sent: list[str] = []  # claim ids whose rows were confirmed sent
    decided: list[_Decision] = []  # investigators' decisions taken


_FRAME = struct.Struct("<I")


class Decided(NamedTuple):
    """What ``FraudEngine.decide`` did: sentences on decisions that apply to no claim the
    engine holds, and the alerts the confirmations raised in their rings."""

    notes: list[str]
    alerts: list[dict]


@dataclass
class _Scored:
    """The claims of some rings, scored: what alerts are made of."""

    rings: dict[str, list[str]]  # ring id -> its claim ids
    ids: list[str]
    rows: list[dict]  # claim features, in ``ids`` order
    scores: np.ndarray
    confirmed: dict[str, list[int]]  # ring id -> decision times of its claims confirmed as fraud

    def ring_of(self) -> dict[str, str]:
        return {c: ring for ring, members in self.rings.items() for c in members}


class FraudEngine:
    """``state_path``: file holding the engine state (created on first save).
    ``model``: a trained ``FraudModel`` or the path of one (``voltrisk fraud train
    --model-out``); default ``fraud_model.json`` beside the state file."""

    def __init__(self, state_path: str | Path, model: FraudModel | str | Path | None = None,
                 threshold: float = 0.5, snapshot_every: int = 5_000) -> None:
        self.state_path = Path(state_path)
        self.journal_path = self.state_path.with_name(self.state_path.name + ".journal")
        self.snapshot_every = snapshot_every
        if not isinstance(model, FraudModel):
            path = Path(model) if model is not None else self.state_path.with_name("fraud_model.json")
            if not path.exists():
                raise FileNotFoundError(f"fraud model {path} not found; train one with "
                                        f"`voltrisk fraud train --model-out {path}` or pass model=")
            model = FraudModel.load(path)
        self.model = model
        self.threshold = threshold
        if self.state_path.exists():
            state = msgspec.msgpack.decode(self.state_path.read_bytes(), type=_EngineState)
            self.graph, self.known = ClaimGraph.from_bytes(state.graph), state.claims
            self.unsent, self.unsent_claims, self.decisions = state.unsent, state.unsent_claims, state.decisions
            last_version = state.last_version
        else:
            self.graph, self.known = ClaimGraph(), {}
            self.unsent, self.unsent_claims, self.decisions = {}, {}, {}
            last_version = 0
        self._journaled = 0
        self._last_version = max([last_version] + [a["version"] for a in self.unsent.values()])
        for entry in self._read_journal():
            self._apply(entry)
            self._journaled += len(entry.added)
        # an unsent alert of an engine before MAX_ALERT_MEMBERS names its whole ring, and
        # may be too big for Kafka: it would fail on every restart
        oversized = [a for a in self.unsent.values() if len(a["members"]) > MAX_ALERT_MEMBERS]
        nearest = self.graph.nearest([a["claim_id"] for a in oversized], MAX_ALERT_MEMBERS)
        for alert in oversized:
            alert["members"] = nearest[alert["claim_id"]]

    def _apply(self, entry: _JournalEntry) -> None:
        for links, known in entry.added:
            self.graph.add(links)
            self.known.setdefault(links.claim_id, known)
        for cid, ring_claims in entry.alerted.items():
            self.known[cid].alerted_ring_claims = max(self.known[cid].alerted_ring_claims, ring_claims)
        for alert in entry.alerts:
            self.unsent[alert["alert_id"]] = alert
            self._last_version = max(self._last_version, alert["version"])
            known = self.known[alert["claim_id"]]
            known.alerted_confirmed = max(known.alerted_confirmed, alert.get("ring_confirmed", 0))
        self._forget_sent(entry.sent)
        for rows in entry.claim_rows:
            self.unsent_claims[rows["claim"]["claim_id"]] = rows
        for cid in entry.claims_sent:
            self.unsent_claims.pop(cid, None)
        self._keep(entry.decided)

    def _keep(self, decisions: Sequence[_Decision]) -> list[_Decision]:
        """Keep each decision that is later than the one kept for its claim; returns those."""
        kept = []
        for d in decisions:
            if d.after(self.decisions.get(d.claim_id)):
                self.decisions[d.claim_id] = d
                kept.append(d)
        return kept

    def decide(self, decisions: Sequence[DecisionV1]) -> Decided:
        """Take investigators' decisions: per claim the latest by decision time is kept
        (a redelivered older one does not undo a newer one), journaled before this returns,
        with the alerts a confirmation raised in its ring (``Decided.alerts``, also in
        ``unsent_alerts`` until ``confirm``ed). ``Decided.notes`` has a sentence for each
        decision that applies to no claim the engine holds: one on an alert id that names
        no claim is ignored, one on a claim the engine has not seen is kept (it counts once
        the claim arrives)."""
        notes, taken = [], []
        for d in decisions:
            cid = d.alert_id.removeprefix(ALERT_PREFIX)
            if cid == d.alert_id or not cid:
                notes.append(f"decision {d.event_id} on {d.alert_id!r} is ignored: the engine's alert ids are "
                             f"{ALERT_PREFIX!r} and a claim id")
                continue
            if cid not in self.graph:
                notes.append(f"decision {d.event_id} ({d.status}) on {d.alert_id} names claim {cid}, which the engine "
                             "has not seen; it is kept and counts once the claim arrives")
            taken.append(_Decision(cid, d.status, d.ts_ms, d.event_id))
        kept = self._keep(taken)
        if not kept:
            return Decided(notes, [])
        alerts = self._alert_confirmed_rings([d.claim_id for d in kept if d.status == "confirmed" and d.claim_id in self.graph])
        self._log(_JournalEntry([], self._alerted(alerts), alerts, decided=kept))
        return Decided(notes, alerts)

    def _alert_confirmed_rings(self, confirmed_ids: Sequence[str]) -> list[dict]:
        """Alerts for the claims near ``confirmed_ids`` (just confirmed as fraud) that the
        investigators should now look at: of the ``MAX_ALERT_MEMBERS`` nearest each, those
        without a decision of their own whose last alert, if any, named fewer confirmations
        in the ring than it holds now."""
        if not confirmed_ids:
            return []
        scored = self._score(confirmed_ids)
        near = self.graph.nearest(confirmed_ids, MAX_ALERT_MEMBERS)
        ring_of = scored.ring_of()
        wanted = {c for cid in confirmed_ids for c in near[cid]
                  if c not in self.decisions and self.known[c].alerted_confirmed < len(scored.confirmed[ring_of[c]])}
        return self._make_alerts(scored, [i for i, c in enumerate(scored.ids) if c in wanted])

    def _score(self, claim_ids: Iterable[str]) -> _Scored:
        """Score every claim of the rings of ``claim_ids`` (a ring's claims get riskier as it grows)."""
        rings = self.graph.members_by_ring(claim_ids)
        ids = [cid for members in rings.values() for cid in members]
        asof = max(self.graph.claim(c).ts_ms for c in ids)
        rows = [claim_features(self.graph, cid, asof, loss_ts_ms=self.known[cid].loss_ts_ms,
                               facts=self.known[cid].facts) for cid in ids]
        # investigators' confirmations in each ring: decision times
        confirmed = {ring: [d.ts_ms for c in members if (d := self.decisions.get(c)) and d.status == "confirmed"]
                     for ring, members in rings.items()}
        return _Scored(rings, ids, rows, self.model.predict(rows), confirmed)

    def _next_version(self) -> int:
        """A version a call: a ring's newer alert replaces the older one wherever it is kept."""
        self._last_version = max(int(time.time() * 1000), self._last_version + 1)
        return self._last_version

    def _make_alerts(self, scored: _Scored, hits: Sequence[int], now_ms: int | None = None) -> list[dict]:
        """The alerts of the scored claims at ``hits``, versioned ``now_ms`` (default: a new
        version), kept unsent (not journaled yet: the caller journals them with what made
        them), ranked."""
        if not hits:
            return []
        now_ms = now_ms or self._next_version()
        ids, rows, scores, rings = scored.ids, scored.rows, scored.scores, scored.rings
        # a ring's score: mean p(fraud) of its claims (the evaluation's ring-alert rule)
        pos = {c: k for k, c in enumerate(ids)}
        ring_score = {ring: float(np.mean(scores[[pos[c] for c in members]])) for ring, members in rings.items()}
        words = reasons(self.model, [rows[i] for i in hits])
        nearest = self.graph.nearest([ids[i] for i in hits], MAX_ALERT_MEMBERS)
        alerts = []
        for i, why in zip(hits, words):
            cid, p, row = ids[i], float(scores[i]), rows[i]
            ring = self.graph.component_id(cid)
            known = self.known[cid]
            known.alerted_ring_claims = int(row["ring_claims"])
            known.alerted_confirmed = len(scored.confirmed[ring])
            alerts.append({
                "alert_id": ALERT_PREFIX + cid, "claim_id": cid, "ring_id": ring, "members": nearest[cid],
                "ring_claims": len(rings[ring]), "ring_score": round(ring_score[ring], 4), "score": round(p, 4),
                "amount_eur": row["amount_eur"],
                "expected_saving_eur": round(p * row["amount_eur"], 2),
                "verdict": judge(known.facts, row["amount_eur"]).verdict, "evidence": known.evidence,
                "reasons": _confirmed_reason(scored.confirmed[ring]) + [r["text"] for r in why],
                "claim_ts_ms": self.graph.claim(cid).ts_ms, "created_ts_ms": now_ms, "version": now_ms,
                "ring_confirmed": len(scored.confirmed[ring]),
            })
        for alert in alerts:
            self.unsent[alert["alert_id"]] = alert
        return sorted(alerts, key=_rank)

    def _alerted(self, alerts: Sequence[dict]) -> dict[str, int]:
        """Claim id -> ring size at its alert, for the journal."""
        return {a["claim_id"]: self.known[a["claim_id"]].alerted_ring_claims for a in alerts}

    def _forget_sent(self, sent: Sequence[tuple[str, int]]) -> bool:
        """Drop the unsent alerts ``sent`` names (not a newer version of one); whether any was."""
        dropped = False
        for alert_id, version in sent:
            if self.unsent.get(alert_id, {}).get("version") == version:
                del self.unsent[alert_id]
                dropped = True
        return dropped

    def unsent_alerts(self) -> list[dict]:
        """Alerts ``process`` returned that were not confirmed sent, in its order (rings
        holding confirmed fraud first, then by expected saving): send them (again) and
        ``confirm`` them."""
        return sorted(self.unsent.values(), key=_rank)

    def confirm(self, alerts: Sequence[dict], claims: Sequence[dict] = ()) -> None:
        """``alerts`` (and ``claims``' rows) reached Kafka: journaled, so they are not sent
        again after a restart."""
        sent = [(a["alert_id"], a["version"]) for a in alerts]
        claims_sent = [c["claim"]["claim_id"] for c in claims if c["claim"]["claim_id"] in self.unsent_claims]
        for cid in claims_sent:
            del self.unsent_claims[cid]
        if self._forget_sent(sent) or claims_sent:
            self._log(_JournalEntry([], {}, [], sent, [], claims_sent))

    def unsent_claim_rows(self) -> list[dict]:
        """The warehouse rows of the claims ``process`` took, not confirmed sent: per claim
        ``{"claim": fraud_claims row, "entities": fraud_claim_entities rows}`` (what the
        investigators' ring graph and telematics table read)."""
        return list(self.unsent_claims.values())

    def _read_journal(self) -> list[_JournalEntry]:
        if not self.journal_path.exists():
            return []
        data, pos, out = self.journal_path.read_bytes(), 0, []
        decoder = msgspec.msgpack.Decoder(_JournalEntry)
        while pos + _FRAME.size <= len(data):
            (n,) = _FRAME.unpack_from(data, pos)
            if pos + _FRAME.size + n > len(data):
                break
            try:
                out.append(decoder.decode(data[pos + _FRAME.size:pos + _FRAME.size + n]))
            except msgspec.DecodeError:
                if data[pos:].strip(b"\x00"):
                    raise ValueError(f"the fraud journal {self.journal_path} is damaged at byte {pos} of {len(data)}, "
                                     "with entries after it; move it aside to start from the snapshot (the claims "
                                     "after the snapshot are then scored again only if Kafka still has them)") from None
                break  # zeros where a last entry was being written (a crash on some file systems)
            pos += _FRAME.size + n
        if pos < len(data):
            # torn write at a crash (that batch was never acknowledged): cut it off so
            # the next append follows the last whole entry
            with open(self.journal_path, "r+b") as fh:
                fh.truncate(pos)
        return out

    def _log(self, entry: _JournalEntry) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        data = _FRAME.pack(len(body := msgspec.msgpack.encode(entry))) + body
        # unbuffered: a failed write (a full disk) is cut back at once, or the next entry
        # would follow a partial one (a buffered file would try to flush it again first)
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
        self._journaled += len(entry.added)
        if self._journaled >= self.snapshot_every:
            self.save()

    def save(self) -> None:
        """Write the whole state atomically and start an empty journal."""
        data = msgspec.msgpack.encode(_EngineState(self.graph.to_bytes(), self.known, self.unsent, self._last_version,
                                                   self.unsent_claims, self.decisions))
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)
        self.journal_path.unlink(missing_ok=True)
        self._journaled = 0

    def process(self, claims: Sequence[FnolV1], telemetry_facts: Mapping[str, Telemetry]) -> list[dict]:
        """Add ``claims`` (duplicates of known claim ids are ignored) and return new
        alerts: those of rings holding a claim confirmed as fraud first (a new claim there is
        alerted whatever its score), then by expected saving. ``telemetry_facts`` maps claim
        id to either ready ``TelematicsFacts`` or the insured vehicle's records around the
        loss; a claim missing from it is judged ``no_telematics``. The alerts are also kept
        in ``unsent_alerts`` until they are ``confirm``ed."""
        touched: set[str] = set()
        added: list[tuple[ClaimLinks, _Known]] = []
        checked: list[tuple[FnolV1, Verification, ClaimLinks]] = []
        for claim in claims:
            if claim.claim_id in self.graph:
                continue
            given = telemetry_facts.get(claim.claim_id)
            if given is None:
                facts = NO_TELEMATICS
            elif isinstance(given, TelematicsFacts):
                facts = given
            else:
                facts = facts_from_telemetry(claim.loss_ts_ms, claim.lat, claim.lon, given)
            check = judge(facts, claim.amount_eur)
            known = _Known(claim.loss_ts_ms, facts, check.evidence)
            links = links_from_fnol(claim, check.verdict)
            self.known[claim.claim_id] = known
            added.append((links, known))
            checked.append((claim, check, links))
            touched.add(claim.claim_id)
            touched.update(self.graph.add(links))
        if not touched:
            return []
        scored = self._score(touched)
        ring_of, new = scored.ring_of(), {links.claim_id for links, _ in added}

        def alerted(cid: str, p: float) -> bool:
            # a new claim (none decided on it) of a ring holding confirmed fraud, whatever its score
            return p >= self.threshold or (cid in new and cid not in self.decisions and bool(scored.confirmed[ring_of[cid]]))

        hits = [i for i, (cid, p) in enumerate(zip(scored.ids, scored.scores))
                if alerted(cid, p) and _realert(self.known[cid].alerted_ring_claims, int(scored.rows[i]["ring_claims"]))]
        now_ms = self._next_version()
        alerts = self._make_alerts(scored, hits, now_ms)
        claim_out = [{"claim": claim_row(c, check, self.graph.component_id(c.claim_id), cell_of(c.lat, c.lon), now_ms),
                      "entities": entity_rows(links, now_ms)} for c, check, links in checked]
        for rows in claim_out:
            self.unsent_claims[rows["claim"]["claim_id"]] = rows
        self._log(_JournalEntry(added, self._alerted(alerts), alerts, [], claim_out))
        return alerts


def _rank(alert: dict) -> tuple[bool, float]:
    """Alerts of rings holding confirmed fraud first, then by expected saving."""
    return not alert.get("ring_confirmed", 0), -alert["expected_saving_eur"]


def _confirmed_reason(decided_ts_ms: Sequence[int]) -> list[str]:
    """The reason an alert's ring holds claims confirmed as fraud (decided at ``decided_ts_ms``), if it does."""
    if not decided_ts_ms:
        return []
    n, latest = len(decided_ts_ms), time.strftime("%Y-%m-%d", time.gmtime(max(decided_ts_ms) / 1000))
    return [f"ring holds {n} claim{'s' if n > 1 else ''} confirmed as fraud by investigators (latest {latest})"]
