"""Incremental entity graph of claims.

Nodes are claims and the entities they name: persons, vehicles, phones,
addresses, bank accounts (the *link* kinds, which join claims into components)
and garages, tow companies, lawyers, clinics (the *service* kinds, which are
counted but do not join components: a busy honest garage would otherwise glue
thousands of unrelated claims into one component).

Adding a claim is O(entities x α(n)): union-find with union by size and path
compression, per-component statistics merged small-into-large, reuse counts kept
as sorted timestamp lists per entity, and collision cycles searched only around
the new insured -> third-party edge (bounded BFS both ways). Nothing is
recomputed over the whole graph. ``recompute_components`` does the full
recompute from the stored links; the property test checks both agree.

The state is plain data and round-trips through ``to_bytes``/``from_bytes``
(msgpack), so a worker restart resumes where it stopped.
"""

from __future__ import annotations

import bisect
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from fraudring.resolve import kind_of_column, normalize, person_key
from stream.records import FnolV1

# Every other kind (person, phone, address, bank, vehicle, or a generic table's own
# column kinds) links claims into components.
SERVICE_KINDS = frozenset({"garage", "tow", "lawyer", "clinic"})
DAY_MS = 86_400_000

Verdict = str  # "consistent" | "contradicted" | "no_telematics" (see fraudring.verify)


@dataclass(frozen=True)
class ClaimLinks:
    """One claim as the graph sees it: canonical entity keys and collision edges."""

    claim_id: str
    ts_ms: int
    amount_eur: float = 0.0
    entities: tuple[tuple[str, str], ...] = ()
    # directed insured -> third-party edges between vehicle (or person) keys
    collisions: tuple[tuple[str, str], ...] = ()
    verdict: Verdict = "no_telematics"


def _dedupe(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(dict.fromkeys(p for p in pairs if p[1] is not None))


def links_from_fnol(claim: FnolV1, verdict: Verdict = "no_telematics") -> ClaimLinks:
    """Graph view of a ``claims.fnol.v1`` record."""
    entities: list[tuple[str, str]] = []
    insured: list[str] = []
    others: list[str] = []
    for party in claim.parties:
        pkey = person_key(party.name, party.phone, party.bank_account, party.address)
        vkey = normalize("vehicle", party.vehicle_id or party.plate)
        entities += [
            ("person", pkey),
            ("phone", normalize("phone", party.phone)),
            ("address", normalize("address", party.address)),
            ("bank", normalize("bank", party.bank_account)),
            ("vehicle", vkey),
        ]
        node = vkey or pkey
        if node is not None and party.role == "insured":
            insured.append(node)
        elif node is not None and party.role == "third_party":
            others.append(node)
    for kind, raw in (("garage", claim.garage), ("tow", claim.tow_company), ("lawyer", claim.lawyer),
                      ("clinic", claim.clinic)):
        entities.append((kind, normalize(kind, raw)))
    return ClaimLinks(
        claim_id=claim.claim_id,
        ts_ms=claim.ts_ms,
        amount_eur=claim.amount_eur,
        entities=_dedupe(entities),
        collisions=tuple((a, b) for a in insured for b in others if a != b),
        verdict=verdict,
    )


def party_prefix(column: str, kind: str) -> str:
    """``third_party_phone`` -> ``third_party``: columns with one prefix describe one party."""
    col = column.casefold()
    for hint in (kind, "mobile", "tel", "addr", "account", "bank", "vin", "plate", "vehicle", "name", "id"):
        if col.endswith("_" + hint):
            col = col[: -len(hint) - 1]
    return col


def links_from_row(row: Mapping[str, object], entity_cols: Sequence[str], *, claim_id: str, ts_ms: int,
                   amount_eur: float = 0.0, verdict: Verdict = "no_telematics") -> ClaimLinks:
    """Graph view of one row of any claims table. Columns are typed by name
    (``kind_of_column``); columns sharing a prefix (``insured_name``,
    ``insured_phone``) are one party, which gives a person key; a vehicle column
    of an ``insured*`` party and one of a ``third*`` party give a collision edge."""
    entities: list[tuple[str, str]] = []
    parties: dict[str, dict[str, str]] = defaultdict(dict)
    for col in entity_cols:
        raw = row.get(col)
        if raw is None or (isinstance(raw, float) and raw != raw):
            continue
        kind = kind_of_column(col)
        parties[party_prefix(col, kind)][kind] = str(raw)
        if kind != "name":
            entities.append((kind, normalize(kind, str(raw))))
    vehicles: dict[str, str] = {}
    for prefix, fields in parties.items():
        if "name" in fields:
            entities.append(("person", person_key(fields["name"], fields.get("phone"), fields.get("bank"),
                                                  fields.get("address"))))
        vkey = normalize("vehicle", fields.get("vehicle"))
        if vkey is not None:
            vehicles[prefix] = vkey
    insured = [v for p, v in vehicles.items() if p.startswith("insured")]
    others = [v for p, v in vehicles.items() if p.startswith("third") or p.startswith("other")]
    return ClaimLinks(
        claim_id=claim_id, ts_ms=int(ts_ms), amount_eur=float(amount_eur), entities=_dedupe(entities),
        collisions=tuple((a, b) for a in insured for b in others if a != b), verdict=verdict,
    )


class CompStats(msgspec.Struct):
    """Per-component statistics; every field merges by addition (or min/max)."""

    n_claims: int = 0
    n_entities: int = 0
    n_people: int = 0
    pair_links: int = 0  # sum over link entities of C(claims on it, 2)
    shared_entities: int = 0  # link entities on >= 2 claims
    shared_services: int = 0  # service entities on >= 2 claims of this component
    amount_eur: float = 0.0
    ts_first_ms: int = 0
    ts_last_ms: int = 0
    first_claim: str = ""
    n_contradicted: int = 0
    n_no_telematics: int = 0
    n_cycle_claims: int = 0
    services: dict[int, int] = {}
    claim_ids: list[str] = []

    @property
    def density(self) -> float:
        """Shared-entity links per claim pair, capped at 1 (1.0 for a lone claim): the
        share of claim pairs sharing an entity when no pair shares two."""
        pairs = self.n_claims * (self.n_claims - 1) // 2
        return 1.0 if pairs == 0 else min(1.0, self.pair_links / pairs)


class ClaimRec(msgspec.Struct, array_like=True):
    node: int
    ts_ms: int
    amount_eur: float
    verdict: str
    entities: list[int]  # every entity node of the claim
    linked: list[int]  # the link entities it was joined to (not hub-capped)
    cycle_len: int = 0


class _State(msgspec.Struct):
    hub_claims: int
    max_cycle_len: int
    nodes: list[str]
    parent: list[int]
    size: list[int]
    stats: dict[int, CompStats]
    entity_ts: dict[int, list[int]]
    claims: dict[str, ClaimRec]
    out_edges: dict[str, list[str]]
    in_edges: dict[str, list[str]]
    edge_claims: dict[str, list[str]]


class ClaimGraph:
    """Incremental claim-entity graph. ``hub_claims``: a link entity already on
    this many claims stops joining components (placeholder phones, a fleet
    operator's address); its reuse is still counted. ``max_cycle_len``: longest
    collision cycle searched."""

    def __init__(self, hub_claims: int = 50, max_cycle_len: int = 5) -> None:
        self._s = _State(hub_claims, max_cycle_len, [], [], [], {}, {}, {}, {}, {}, {})
        self._index: dict[str, int] = {}

    # --- persistence -----------------------------------------------------------------
    def to_bytes(self) -> bytes:
        return msgspec.msgpack.encode(self._s)

    @classmethod
    def from_bytes(cls, data: bytes) -> ClaimGraph:
        g = cls.__new__(cls)
        g._s = msgspec.msgpack.decode(data, type=_State)
        g._index = {k: i for i, k in enumerate(g._s.nodes)}
        return g

    # --- union-find ------------------------------------------------------------------
    def _node(self, key: str) -> int:
        i = self._index.get(key)
        if i is None:
            i = len(self._s.nodes)
            self._index[key] = i
            self._s.nodes.append(key)
            self._s.parent.append(i)
            self._s.size.append(1)
        return i

    def _find(self, i: int) -> int:
        parent = self._s.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def _union(self, a: int, b: int) -> int:
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return ra
        if self._s.size[ra] < self._s.size[rb]:
            ra, rb = rb, ra
        self._s.parent[rb] = ra
        self._s.size[ra] += self._s.size[rb]
        big = self._s.stats.setdefault(ra, CompStats())
        small = self._s.stats.pop(rb, None)
        if small is not None:
            _merge(big, small)
        return ra

    # --- building --------------------------------------------------------------------
    def __contains__(self, claim_id: str) -> bool:
        return claim_id in self._s.claims

    def __len__(self) -> int:
        return len(self._s.claims)

    def add(self, claim: ClaimLinks) -> list[str]:
        """Add a claim; returns the claim ids whose collision-cycle status changed
        (empty when no cycle closed). Adding a known claim id is a no-op."""
        s = self._s
        if claim.claim_id in s.claims:
            return []
        c = self._node("claim:" + claim.claim_id)
        services = [self._node(f"{k}:{v}") for k, v in claim.entities if k in SERVICE_KINDS]
        s.stats[c] = CompStats(
            n_claims=1, amount_eur=claim.amount_eur, ts_first_ms=claim.ts_ms, ts_last_ms=claim.ts_ms,
            first_claim=claim.claim_id, n_contradicted=int(claim.verdict == "contradicted"),
            n_no_telematics=int(claim.verdict == "no_telematics"), services=dict.fromkeys(services, 1),
            claim_ids=[claim.claim_id],
        )
        rec = ClaimRec(c, claim.ts_ms, claim.amount_eur, claim.verdict, [], [])
        for kind, value in claim.entities:
            e = self._node(f"{kind}:{value}")
            rec.entities.append(e)
            ts_list = s.entity_ts.setdefault(e, [])
            if kind not in SERVICE_KINDS:
                k = len(ts_list)
                if k < s.hub_claims:
                    if e not in s.stats and self._find(e) == e:
                        s.stats[e] = CompStats(n_entities=1, n_people=int(kind == "person"))
                    root = self._union(c, e)
                    st = s.stats[root]
                    st.pair_links += k
                    st.shared_entities += int(k == 1)
                    rec.linked.append(e)
            bisect.insort(ts_list, claim.ts_ms)
        s.claims[claim.claim_id] = rec
        changed: list[str] = []
        for a, b in claim.collisions:
            changed += self._add_collision(a, b, claim.claim_id)
        return changed

    def _add_collision(self, a: str, b: str, claim_id: str) -> list[str]:
        """Add edge a -> b and mark every claim whose edge now lies on a cycle of at
        most ``max_cycle_len`` edges through it: edge x -> y is on such a cycle when
        dist(b, x) + 1 + dist(y, a) + 1 <= max_cycle_len. Both distances come from
        BFS bounded by the cycle length, forward from b and backward from a."""
        s = self._s
        for table, key, val in ((s.out_edges, a, b), (s.in_edges, b, a)):
            adj = table.setdefault(key, [])
            if val not in adj:
                adj.append(val)
        s.edge_claims.setdefault(f"{a}\x00{b}", []).append(claim_id)
        budget = s.max_cycle_len - 1  # edges besides a -> b
        from_b = self._bfs(b, s.out_edges, budget)
        if a not in from_b:
            return []
        to_a = self._bfs(a, s.in_edges, budget)
        changed = []
        for x, dx in from_b.items():
            for y in s.out_edges.get(x, ()):
                length = dx + 1 + to_a.get(y, s.max_cycle_len) + 1
                if (x, y) == (a, b):
                    length = from_b[a] + 1
                if length > s.max_cycle_len:
                    continue
                for cid in s.edge_claims.get(f"{x}\x00{y}", []):
                    rec = s.claims[cid]
                    if rec.cycle_len == 0 or length < rec.cycle_len:
                        if rec.cycle_len == 0:
                            s.stats[self._find(rec.node)].n_cycle_claims += 1
                        rec.cycle_len = length
                        changed.append(cid)
        return changed

    @staticmethod
    def _bfs(src: str, adj: dict[str, list[str]], max_edges: int) -> dict[str, int]:
        """Hop distance from ``src`` to every node within ``max_edges`` along ``adj``."""
        dist = {src: 0}
        frontier = deque([src])
        while frontier:
            node = frontier.popleft()
            if dist[node] == max_edges:
                continue
            for nxt in adj.get(node, ()):
                if nxt not in dist:
                    dist[nxt] = dist[node] + 1
                    frontier.append(nxt)
        return dist

    # --- reading ---------------------------------------------------------------------
    def claim(self, claim_id: str) -> ClaimRec:
        return self._s.claims[claim_id]

    def component(self, claim_id: str) -> CompStats:
        return self._s.stats[self._find(self._s.claims[claim_id].node)]

    def component_id(self, claim_id: str) -> str:
        """Stable ring id: named after the component's earliest claim."""
        return "ring-" + self.component(claim_id).first_claim

    def members(self, claim_id: str) -> list[str]:
        """Claim ids in the claim's component, sorted."""
        return sorted(self.component(claim_id).claim_ids)

    def members_by_ring(self, claim_ids: Iterable[str]) -> dict[str, list[str]]:
        """Ring id -> sorted member claim ids, for the rings of ``claim_ids``."""
        out: dict[str, list[str]] = {}
        for c in claim_ids:
            ring = self.component_id(c)
            if ring not in out:
                out[ring] = self.members(c)
        return out

    def nearest(self, claim_ids: Iterable[str], limit: int) -> dict[str, list[str]]:
        """Claim id -> at most ``limit`` claim ids of its component, sorted: the claim
        itself and the claims fewest shared link entities away from it (breadth-first
        over the links that joined the component; a layer that does not fit whole is
        cut by claim id). A component of at most ``limit`` claims is given whole."""
        by_root: dict[int, list[str]] = defaultdict(list)
        for c in claim_ids:
            by_root[self._find(self._s.claims[c].node)].append(c)
        out: dict[str, list[str]] = {}
        for root, cids in by_root.items():
            members = self._s.stats[root].claim_ids
            if len(members) <= limit:
                out.update(dict.fromkeys(cids, sorted(members)))
                continue
            on_entity: dict[int, list[str]] = defaultdict(list)
            for m in members:
                for e in self._s.claims[m].linked:
                    on_entity[e].append(m)
            for c in cids:
                out[c] = self._near(c, on_entity, limit)
        return out

    def _near(self, claim_id: str, on_entity: Mapping[int, list[str]], limit: int) -> list[str]:
        seen, layer, walked = {claim_id}, [claim_id], set()
        while layer and len(seen) < limit:
            step = set()
            for c in layer:
                for e in self._s.claims[c].linked:
                    if e not in walked:
                        walked.add(e)
                        step.update(m for m in on_entity[e] if m not in seen)
            layer = sorted(step)[:limit - len(seen)]
            seen.update(layer)
        return sorted(seen)

    def entity_key(self, node: int) -> tuple[str, str]:
        kind, _, value = self._s.nodes[node].partition(":")
        return kind, value

    def reuse(self, node: int, since_ms: int, until_ms: int) -> int:
        """Claims on entity ``node`` with report time in [since_ms, until_ms]."""
        ts = self._s.entity_ts.get(node, [])
        return bisect.bisect_right(ts, until_ms) - bisect.bisect_left(ts, since_ms)

    def prior(self, node: int, before_ms: int) -> int:
        """Claims on entity ``node`` reported before ``before_ms``."""
        return bisect.bisect_left(self._s.entity_ts.get(node, []), before_ms)

    def claim_ids(self) -> list[str]:
        return list(self._s.claims)

    # --- full recompute (for checks and tests) ----------------------------------------
    def recompute_components(self) -> dict[str, tuple[frozenset[str], dict[str, int]]]:
        """Components and their additive statistics rebuilt from scratch by BFS over
        the stored claim -> linked-entity edges: claim id -> (member claim ids, stats)."""
        s = self._s
        adj: dict[int, list[int]] = defaultdict(list)
        for rec in s.claims.values():
            for e in rec.linked:
                adj[rec.node].append(e)
                adj[e].append(rec.node)
        claim_of_node = {rec.node: cid for cid, rec in s.claims.items()}
        out: dict[str, tuple[frozenset[str], dict[str, int]]] = {}
        seen: set[int] = set()
        for cid, rec in s.claims.items():
            if rec.node in seen:
                continue
            comp, queue = [], deque([rec.node])
            seen.add(rec.node)
            while queue:
                n = queue.popleft()
                comp.append(n)
                for m in adj[n]:
                    if m not in seen:
                        seen.add(m)
                        queue.append(m)
            claims = [claim_of_node[n] for n in comp if n in claim_of_node]
            entity_deg = {n: len(adj[n]) for n in comp if n not in claim_of_node}
            service_use: dict[int, int] = defaultdict(int)
            for c in claims:
                for e in s.claims[c].entities:
                    if self.entity_key(e)[0] in SERVICE_KINDS:
                        service_use[e] += 1
            stats = {
                "n_claims": len(claims),
                "n_entities": len(entity_deg),
                "n_people": sum(1 for n in entity_deg if self.entity_key(n)[0] == "person"),
                "pair_links": sum(d * (d - 1) // 2 for d in entity_deg.values()),
                "shared_entities": sum(1 for d in entity_deg.values() if d >= 2),
                "shared_services": sum(1 for u in service_use.values() if u >= 2),
                "n_cycle_claims": sum(1 for c in claims if s.claims[c].cycle_len > 0),
            }
            members = frozenset(claims)
            for c in claims:
                out[c] = (members, stats)
        return out


def _merge(big: CompStats, small: CompStats) -> None:
    for name in ("n_claims", "n_entities", "n_people", "pair_links", "shared_entities", "shared_services",
                 "amount_eur", "n_contradicted", "n_no_telematics", "n_cycle_claims"):
        setattr(big, name, getattr(big, name) + getattr(small, name))
    if small.n_claims and (not big.first_claim or small.ts_first_ms < big.ts_first_ms
                           or (small.ts_first_ms == big.ts_first_ms and small.first_claim < big.first_claim)):
        big.ts_first_ms, big.first_claim = small.ts_first_ms, small.first_claim
    big.ts_last_ms = max(big.ts_last_ms, small.ts_last_ms)
    if len(big.claim_ids) < len(small.claim_ids):
        big.claim_ids, small.claim_ids = small.claim_ids, big.claim_ids
    big.claim_ids.extend(small.claim_ids)
    if len(big.services) < len(small.services):
        big.services, small.services = small.services, big.services
    for node, n in small.services.items():
        before = big.services.get(node, 0)
        big.services[node] = before + n
        # each side already counted its own shared services; count the union once
        big.shared_services += int(before + n >= 2) - int(before >= 2) - int(n >= 2)
