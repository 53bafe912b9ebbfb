"""The claims system: genuine first notices of loss for crashes, organised fraud
rings and lone opportunistic fraud, with ground truth.

Both fidelities use it. A claim is first a ``Draft`` (who, when, where, what kind);
the caller attaches telematics-verification ``Facts`` (drawn for the book, read
from the simulated traces at event level); ``to_row`` renders the contract row with
realistic noise in entity values, ``to_fnol`` the ``claims.fnol.v1`` record.

Rings (DESIGN §7): members share a few phones, addresses and bank accounts and
use a complicit garage, tow company, lawyer and clinic. Their claims are staged
collisions between members (``staged_ring``), collision cycles A->B->C->A
(``cycle_ring``) or phantom crashes where the vehicles were elsewhere
(``phantom_ring``). Staged and phantom crashes leave no crash pulse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from simulators import city
from voltrisk.settings import fremtpl2_dir
from stream import records as r

FREMTPL2_SEV = "freMTPL2sev.csv"  # in the freMTPL2 directory (voltrisk.settings.fremtpl2_dir)
CLAIM_COLUMNS = (
    "claim_id",
    "policy_id",
    "ts_ms",
    "loss_ts_ms",
    "lat",
    "lon",
    "cell_h3",
    "amount_eur",
    "insured_name",
    "insured_phone",
    "insured_address",
    "insured_bank_account",
    "insured_vehicle_id",
    "third_party_name",
    "third_party_phone",
    "third_party_address",
    "third_party_bank_account",
    "third_party_vehicle_id",
    "garage",
    "tow_company",
    "lawyer",
    "clinic",
    "insured_in_cell",
    "third_party_in_cell",
    "crash_pulse_found",
    "crash_delta_v_kmh",
    "speed_at_loss_kmh",
    "parked_or_charging_at_loss",
    "telematics_available",
    "is_fraud",
    "ring_id",
    "fraud_type",
)
FRAUD_TYPES = ("genuine", "staged_ring", "phantom_ring", "cycle_ring", "opportunistic")

_SURNAMES = (
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Wu",
    "Zhou",
    "Xu",
    "Sun",
    "Ma",
    "Zhu",
    "Hu",
    "Guo",
    "He",
    "Lin",
    "Gao",
    "Luo",
    "Zheng",
    "Liang",
    "Xie",
    "Song",
    "Tang",
    "Han",
    "Feng",
    "Deng",
)
_GIVEN = (
    "Wei",
    "Fang",
    "Na",
    "Min",
    "Jing",
    "Lei",
    "Jun",
    "Yan",
    "Yong",
    "Jie",
    "Tao",
    "Ming",
    "Chao",
    "Xiu Ying",
    "Hui",
    "Qiang",
    "Ping",
    "Gang",
    "Hao",
    "Yu",
    "Xin",
    "Lan",
    "Bo",
    "Kai",
    "Zhi Qiang",
    "Li Na",
    "Jia Hui",
)
_ROADS = (
    "Nanjing West",
    "Huaihai Middle",
    "Zhaojiabang",
    "Xietu",
    "Yan'an West",
    "Changning",
    "Siping",
    "Zhongshan North",
    "Century",
    "Zhangyang",
    "Pudong South",
    "Longhua",
    "Caoxi North",
    "Hongqiao",
    "Wuning",
    "Tianmu West",
    "Gonghe New",
    "Jiangpu",
    "Dalian",
    "Yangshupu",
    "Lujiabang",
    "Xizang South",
    "Jinqiao",
    "Dongfang",
)
_DISTRICTS = (
    "Huangpu",
    "Xuhui",
    "Changning",
    "Jing'an",
    "Putuo",
    "Hongkou",
    "Yangpu",
    "Minhang",
    "Baoshan",
    "Jiading",
    "Pudong New Area",
    "Songjiang",
    "Qingpu",
)
_MOBILE_PREFIX = (
    "130",
    "131",
    "132",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "158",
    "159",
    "186",
    "187",
    "188",
)


@dataclass(frozen=True)
class Person:
    """A party with canonical entity values (what entity resolution should recover)."""

    name: str
    phone: str  # 11 digits
    address: str
    bank_account: str  # 19 digits
    vehicle_id: str | None = None
    policy_id: str | None = None
    telematics: bool = False


@dataclass(frozen=True)
class Ring:
    ring_id: str
    members: tuple[Person, ...]
    phones: tuple[str, ...]
    addresses: tuple[str, ...]
    accounts: tuple[str, ...]
    garage: str
    tow_company: str
    lawyer: str
    clinic: str


@dataclass(frozen=True)
class Draft:
    """A claim before verification facts and formatting."""

    claim_id: str
    loss_ts_ms: int
    ts_ms: int
    lat: float
    lon: float
    amount_eur: float
    insured: Person
    third: Person | None
    garage: str | None
    tow_company: str | None
    lawyer: str | None
    clinic: str | None
    fraud_type: str
    ring_id: str | None = None


@dataclass(frozen=True)
class Facts:
    """What the platform's telemetry says about a claim (the contract's verification columns)."""

    telematics_available: bool
    insured_in_cell: bool | None = None
    third_party_in_cell: bool | None = None
    crash_pulse_found: bool | None = None
    crash_delta_v_kmh: float = 0.0
    speed_at_loss_kmh: float = 0.0
    parked_or_charging_at_loss: bool | None = None


NO_TELEMATICS = Facts(telematics_available=False)


def load_severities(path: Path | None = None) -> np.ndarray:
    """Claim amounts (EUR) of the real freMTPL2 severity table."""
    path = Path(path or fremtpl2_dir() / FREMTPL2_SEV)
    if not path.exists():
        raise FileNotFoundError(f"freMTPL2 severity table not found at {path}: claim amounts are drawn from it; "
                                "set VOLTRISK_FREMTPL2_DIR to the directory holding it")
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=1)


@dataclass
class Entities:
    """Draws people and service providers; keeps the provider pools honest claims use."""

    rng: np.random.Generator
    garages: list[str] = field(default_factory=list)
    tows: list[str] = field(default_factory=list)
    lawyers: list[str] = field(default_factory=list)
    clinics: list[str] = field(default_factory=list)
    _n: int = 0

    def __post_init__(self):
        self.garages = [self.provider("Auto Repair") for _ in range(400)]
        self.tows = [self.provider("Towing") for _ in range(120)]
        self.lawyers = [self.provider("Law Firm") for _ in range(250)]
        self.clinics = [self.provider("Clinic") for _ in range(200)]
        # Zipf-like popularity: a few big garages handle many honest claims too
        self._pop = {
            k: self._zipf(len(v))
            for k, v in (
                ("garage", self.garages),
                ("tow", self.tows),
                ("lawyer", self.lawyers),
                ("clinic", self.clinics),
            )
        }

    @staticmethod
    def _zipf(n: int) -> np.ndarray:
        w = 1.0 / np.arange(1, n + 1) ** 0.8
        return w / w.sum()

    def _pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def provider(self, kind: str) -> str:
        self._n += 1
        family = self._pick(_SURNAMES) + self._pick(("", " Brothers", " & Partners", " Group"))
        return f"{self._pick(_DISTRICTS)} {family} {kind} {self._n}"

    def honest(self, kind: str) -> str:
        pool = {"garage": self.garages, "tow": self.tows, "lawyer": self.lawyers, "clinic": self.clinics}[kind]
        return pool[int(self.rng.choice(len(pool), p=self._pop[kind]))]

    def address(self) -> str:
        number, road, district = int(self.rng.integers(1, 1500)), self._pick(_ROADS), self._pick(_DISTRICTS)
        return f"No. {number} {road} Road, {district} District, Shanghai"

    def phone(self) -> str:
        return self._pick(_MOBILE_PREFIX) + "".join(str(int(d)) for d in self.rng.integers(0, 10, 8))

    def account(self) -> str:
        return "62" + "".join(str(int(d)) for d in self.rng.integers(0, 10, 17))

    def person(self, vehicle_id: str | None = None, policy_id: str | None = None, telematics: bool = False) -> Person:
        return Person(
            f"{self._pick(_SURNAMES)} {self._pick(_GIVEN)}",
            self.phone(),
            self.address(),
            self.account(),
            vehicle_id,
            policy_id,
            telematics,
        )


# --- noise: the same entity written differently by different claim handlers -------------


def noisy_phone(rng: np.random.Generator, p: str) -> str:
    return (p, f"+86 {p[:3]}-{p[3:7]}-{p[7:]}", f"{p[:3]} {p[3:7]} {p[7:]}", f"+86{p}", f"0086-{p}")[
        int(rng.integers(5))
    ]


def noisy_address(rng: np.random.Generator, a: str) -> str:
    k = int(rng.integers(5))
    if k == 1:
        return a.replace(" Road", " Rd")
    if k == 2:
        return a.upper().replace(" DISTRICT", " Dist.")
    if k == 3:
        return a.replace("No. ", "").replace(", Shanghai", "")
    if k == 4:
        return a.lower().replace(" road", " rd.")
    return a


def noisy_name(rng: np.random.Generator, n: str) -> str:
    family, given = n.split(" ", 1)
    return (
        n,
        f"{family.upper()} {given}",
        f"{family}{given.replace(' ', '')}",
        f"{given} {family}",
        f"{family}  {given}",
    )[int(rng.integers(5))]


def noisy_account(rng: np.random.Generator, b: str) -> str:
    return b if rng.random() < 0.6 else " ".join(b[i : i + 4] for i in range(0, len(b), 4))


def to_row(d: Draft, f: Facts, rng: np.random.Generator) -> dict:
    """The claims-book row of a claim (contract column names and order)."""
    ins, tp = d.insured, d.third

    def ent(p: Person | None, attr: str, noise):
        v = getattr(p, attr) if p is not None else None
        return noise(rng, v) if v else ""

    return {
        "claim_id": d.claim_id,
        "policy_id": ins.policy_id or "",
        "ts_ms": d.ts_ms,
        "loss_ts_ms": d.loss_ts_ms,
        "lat": round(d.lat, 6),
        "lon": round(d.lon, 6),
        "cell_h3": city.cell_of(d.lat, d.lon),
        "amount_eur": round(d.amount_eur, 2),
        "insured_name": noisy_name(rng, ins.name),
        "insured_phone": noisy_phone(rng, ins.phone),
        "insured_address": noisy_address(rng, ins.address),
        "insured_bank_account": noisy_account(rng, ins.bank_account),
        "insured_vehicle_id": ins.vehicle_id or "",
        "third_party_name": ent(tp, "name", noisy_name),
        "third_party_phone": ent(tp, "phone", noisy_phone),
        "third_party_address": ent(tp, "address", noisy_address),
        "third_party_bank_account": ent(tp, "bank_account", noisy_account),
        "third_party_vehicle_id": (tp.vehicle_id or "") if tp else "",
        "garage": d.garage or "",
        "tow_company": d.tow_company or "",
        "lawyer": d.lawyer or "",
        "clinic": d.clinic or "",
        "insured_in_cell": f.insured_in_cell,
        "third_party_in_cell": f.third_party_in_cell,
        "crash_pulse_found": f.crash_pulse_found,
        "crash_delta_v_kmh": round(f.crash_delta_v_kmh, 1),
        "speed_at_loss_kmh": round(f.speed_at_loss_kmh, 1),
        "parked_or_charging_at_loss": f.parked_or_charging_at_loss,
        "telematics_available": f.telematics_available,
        "is_fraud": int(d.fraud_type != "genuine"),
        "ring_id": d.ring_id or "",
        "fraud_type": d.fraud_type,
    }


def to_fnol(row: dict) -> r.FnolV1:
    """The ``claims.fnol.v1`` record of a claims-book row (same noisy entity values)."""
    parties = [
        r.Party(
            role="insured",
            name=row["insured_name"],
            phone=row["insured_phone"],
            address=row["insured_address"],
            bank_account=row["insured_bank_account"],
            vehicle_id=row["insured_vehicle_id"] or None,
        )
    ]
    if row["third_party_name"]:
        parties.append(
            r.Party(
                role="third_party",
                name=row["third_party_name"],
                phone=row["third_party_phone"] or None,
                address=row["third_party_address"] or None,
                bank_account=row["third_party_bank_account"] or None,
                vehicle_id=row["third_party_vehicle_id"] or None,
            )
        )
    return r.FnolV1(
        event_id=f"fnol-{row['claim_id']}",
        ts_ms=row["ts_ms"],
        claim_id=row["claim_id"],
        policy_id=row["policy_id"],
        loss_ts_ms=row["loss_ts_ms"],
        lat=row["lat"],
        lon=row["lon"],
        amount_eur=row["amount_eur"],
        parties=parties,
        garage=row["garage"] or None,
        tow_company=row["tow_company"] or None,
        lawyer=row["lawyer"] or None,
        clinic=row["clinic"] or None,
        description="two-vehicle collision" if row["third_party_name"] else "single-vehicle collision",
    )


# --- claim drafting ---------------------------------------------------------------------------


class ClaimFactory:
    """Numbers claims and draws their non-location attributes."""

    def __init__(self, rng: np.random.Generator, severities: np.ndarray, prefix: str):
        self.rng, self.sev, self.prefix = rng, severities, prefix
        self.ents = Entities(rng)
        self._n = 0

    def next_id(self) -> str:
        self._n += 1
        return f"{self.prefix}-{self._n:07d}"

    def amount(self, inflate: float = 1.0) -> float:
        return float(self.sev[int(self.rng.integers(len(self.sev)))]) * inflate

    def report_delay_ms(self, fraud: bool) -> int:
        # honest drivers report within hours to a couple of days; staged claims are filed quickly and in batches
        hours = self.rng.lognormal(math.log(6.0 if fraud else 20.0), 0.9)
        return int(min(hours, 24 * 30) * 3_600_000)

    def genuine(self, insured: Person, loss_ts_ms: int, lat: float, lon: float, third: Person | None) -> Draft:
        e = self.ents
        return Draft(
            self.next_id(),
            loss_ts_ms,
            loss_ts_ms + self.report_delay_ms(False),
            lat,
            lon,
            self.amount(),
            insured,
            third,
            e.honest("garage") if self.rng.random() < 0.9 else None,
            e.honest("tow") if self.rng.random() < 0.35 else None,
            e.honest("lawyer") if self.rng.random() < 0.06 else None,
            e.honest("clinic") if self.rng.random() < 0.12 else None,
            "genuine",
        )

    def opportunistic(self, insured: Person, loss_ts_ms: int, lat: float, lon: float) -> Draft:
        d = self.genuine(insured, loss_ts_ms, lat, lon, None)
        return replace(
            d,
            amount_eur=d.amount_eur * self.rng.uniform(1.8, 4.0),
            fraud_type="opportunistic",
            clinic=d.clinic or (self.ents.honest("clinic") if self.rng.random() < 0.4 else None),
        )

    def make_ring(self, ring_id: str, members: list[Person]) -> Ring:
        """Members share a small pool of phones, addresses and accounts, and complicit providers."""
        e, n = self.ents, len(members)
        ring = Ring(
            ring_id,
            tuple(members),
            tuple(e.phone() for _ in range(max(1, n // 3))),
            tuple(e.address() for _ in range(max(1, n // 3))),
            tuple(e.account() for _ in range(max(1, n // 4))),
            e.provider("Auto Repair"),
            e.provider("Towing"),
            e.provider("Law Firm"),
            e.provider("Clinic"),
        )
        return ring

    def _as_ring_member(self, ring: Ring, p: Person) -> Person:
        """How a member appears on a claim: often with one of the ring's shared contacts."""
        rng = self.rng
        return replace(
            p,
            phone=ring.phones[int(rng.integers(len(ring.phones)))] if rng.random() < 0.6 else p.phone,
            address=ring.addresses[int(rng.integers(len(ring.addresses)))] if rng.random() < 0.5 else p.address,
            bank_account=ring.accounts[int(rng.integers(len(ring.accounts)))] if rng.random() < 0.7 else p.bank_account,
        )

    def ring_claim(
        self, ring: Ring, kind: str, a: Person, b: Person | None, loss_ts_ms: int, lat: float, lon: float
    ) -> Draft:
        rng = self.rng
        use = lambda p: p if rng.random() < 0.85 else None  # noqa: E731 - complicit providers, most of the time
        return Draft(
            self.next_id(),
            loss_ts_ms,
            loss_ts_ms + self.report_delay_ms(True),
            lat,
            lon,
            self.amount(rng.uniform(1.3, 2.8)),
            self._as_ring_member(ring, a),
            self._as_ring_member(ring, b) if b is not None else None,
            use(ring.garage),
            use(ring.tow_company) if rng.random() < 0.7 else None,
            use(ring.lawyer),
            use(ring.clinic),
            kind,
            ring.ring_id,
        )


def ring_truth(ring: Ring, claim_ids: list[str]) -> dict:
    """Ground truth of one ring: canonical entity values, providers and its claims."""
    return {
        "ring_id": ring.ring_id,
        "members": [
            {
                "name": m.name,
                "phone": m.phone,
                "address": m.address,
                "bank_account": m.bank_account,
                "vehicle_id": m.vehicle_id,
                "policy_id": m.policy_id,
                "telematics": m.telematics,
            }
            for m in ring.members
        ],
        "shared_phones": list(ring.phones),
        "shared_addresses": list(ring.addresses),
        "shared_bank_accounts": list(ring.accounts),
        "garage": ring.garage,
        "tow_company": ring.tow_company,
        "lawyer": ring.lawyer,
        "clinic": ring.clinic,
        "claim_ids": claim_ids,
    }


def ring_plan(rng: np.random.Generator, ring: Ring, claims_per_member: float) -> list[tuple[str, int, int | None]]:
    """The ring's claims as (fraud_type, insured member index, third-party member index or None):
    staged collisions between members, cycles A->B->C->A, and phantom single-vehicle claims."""
    n = len(ring.members)
    total = max(3, int(round(n * claims_per_member)))
    plan: list[tuple[str, int, int | None]] = []
    if n >= 3:
        k = int(rng.integers(3, min(n, 5) + 1))
        cyc = rng.permutation(n)[:k]
        plan += [("cycle_ring", int(cyc[j]), int(cyc[(j + 1) % k])) for j in range(k)]
    while len(plan) < total:
        if rng.random() < 0.6:
            a, b = rng.choice(n, size=2, replace=False)
            plan.append(("staged_ring", int(a), int(b)))
        else:
            plan.append(("phantom_ring", int(rng.integers(n)), None))
    return plan


def draw_facts(rng: np.random.Generator, d: Draft) -> Facts:
    """Verification facts for a book claim, consistent with its true nature and with
    realistic imperfections (GPS gaps, low-speed genuine bumps below the pulse threshold)."""
    ins, tp = d.insured, d.third
    if not ins.telematics or rng.random() < 0.04:  # no device, or no data around the loss
        tp_cell = None if tp is None or not tp.telematics else bool(rng.random() < 0.9)
        return replace(NO_TELEMATICS, third_party_in_cell=tp_cell)
    t = d.fraud_type
    tp_tel = tp is not None and tp.telematics
    if t == "genuine":
        pulse = rng.random() < 0.85
        speed = float(rng.uniform(15, 70)) if pulse else float(rng.uniform(3, 20))
        return Facts(
            True,
            bool(rng.random() < 0.97),
            bool(rng.random() < 0.95) if tp_tel else None,
            pulse,
            float(speed * rng.uniform(0.5, 1.0)) if pulse else 0.0,
            speed,
            False,
        )
    if t in ("staged_ring", "cycle_ring"):  # they meet, bump gently: there, slow, no pulse
        pulse = rng.random() < 0.1
        return Facts(
            True,
            bool(rng.random() < 0.85),
            bool(rng.random() < 0.85) if tp_tel else None,
            pulse,
            float(rng.uniform(3, 8)) if pulse else 0.0,
            float(rng.uniform(0, 12)),
            False,
        )
    if t == "phantom_ring":
        parked = rng.random() < 0.6
        return Facts(
            True, bool(rng.random() < 0.1), None, False, 0.0, 0.0 if parked else float(rng.uniform(20, 60)), parked
        )
    parked = rng.random() < 0.3  # opportunistic: a real small event, inflated, or invented
    pulse = not parked and rng.random() < 0.35
    return Facts(
        True,
        bool(rng.random() < 0.6),
        None,
        pulse,
        float(rng.uniform(5, 15)) if pulse else 0.0,
        0.0 if parked else float(rng.uniform(5, 40)),
        parked,
    )
