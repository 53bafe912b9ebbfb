"""A small seeded claims book for the fraud tests, in the shared claims-book
columns: genuine claims, staged rings (shared people, phones, addresses and
accounts, one corrupt garage/lawyer/clinic, crashes without a crash pulse),
phantom rings (vehicles never at the claimed place), collision-cycle rings and
opportunistic inflation. Entity values carry formatting noise."""

from __future__ import annotations

import random

import h3

DAY_MS = 86_400_000
T0_MS = 1_767_225_600_000  # 2026-01-01 UTC
SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu", "Xu", "Sun", "Hu", "Zhu"]
GIVEN = ["Wei", "Fang", "Na", "Min", "Jing", "Lei", "Yang", "Jun", "Tao", "Ming", "Hui", "Qiang", "Yan", "Ping"]
STREETS = ["Nanjing", "Huaihai", "Zhongshan", "Yan'an", "Siping", "Caoxi", "Longhua", "Hongqiao"]


def _phone_variant(rng: random.Random, digits: str) -> str:
    return rng.choice([
        digits, f"+86 {digits[:3]}-{digits[3:7]}-{digits[7:]}", f"0086{digits}", f"{digits[:3]} {digits[3:7]} {digits[7:]}",
        f"+86{digits}",
    ])


def _address_variant(rng: random.Random, no: int, street: str, unit: int) -> str:
    return rng.choice([
        f"No. {no} {street} Road, Apt {unit}", f"{no} {street.upper()} RD unit {unit}", f"{no}  {street} Rd. Rm {unit}",
        f"{no} {street.lower()} road #{unit}",
    ])


def _name_variant(rng: random.Random, name: str) -> str:
    return rng.choice([name, name.upper(), name.replace(" ", "  "), name.replace(" ", "")])


class _People:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n = 0

    def new(self) -> dict:
        self.n += 1
        r = self.rng
        return {
            "name": f"{r.choice(SURNAMES)} {r.choice(GIVEN)}{r.choice(GIVEN).lower()}",
            "phone": f"1{r.choice('3589')}{self.n:09d}",
            "address": (r.randint(1, 999), r.choice(STREETS), r.randint(100, 2999)),
            "bank": f"6222{self.n:012d}",
            "vehicle": f"VIN{self.n:08d}",
        }


def _party(rng: random.Random, person: dict, prefix: str) -> dict:
    no, street, unit = person["address"]
    return {
        f"{prefix}_name": _name_variant(rng, person["name"]),
        f"{prefix}_phone": _phone_variant(rng, person["phone"]),
        f"{prefix}_address": _address_variant(rng, no, street, unit),
        f"{prefix}_bank_account": " ".join(person["bank"][i:i + 4] for i in range(0, 16, 4)),
        f"{prefix}_vehicle_id": person["vehicle"],
    }


def make_book(seed: int = 1, genuine: int = 1_500, staged: int = 6, phantom: int = 4, cycles: int = 4,
              opportunistic: int = 30) -> list[dict]:
    rng = random.Random(seed)
    people = _People(rng)
    rows: list[dict] = []
    garages = [f"Garage {i}" for i in range(25)]
    tows = [f"Tow {i}" for i in range(8)]
    lawyers = [f"Lawyer {i}" for i in range(30)]
    clinics = [f"Clinic {i}" for i in range(20)]

    def claim(ts: int, insured: dict, third: dict | None, amount: float, facts: dict, truth: tuple, **svc) -> None:
        lat, lon = 31.2 + rng.random() * 0.2, 121.4 + rng.random() * 0.2
        row = {
            "claim_id": f"C{len(rows):06d}", "policy_id": f"P{insured['vehicle']}", "ts_ms": ts + rng.randint(1, 48) * 3_600_000,
            "loss_ts_ms": ts, "lat": lat, "lon": lon, "cell_h3": h3.str_to_int(h3.latlng_to_cell(lat, lon, 8)),
            "amount_eur": round(amount, 2), **_party(rng, insured, "insured"),
            **(_party(rng, third, "third_party") if third else {f"third_party_{k}": "" for k in
                                                               ("name", "phone", "address", "bank_account", "vehicle_id")}),
            "garage": svc.get("garage", rng.choice(garages)), "tow_company": svc.get("tow", rng.choice(tows)),
            "lawyer": svc.get("lawyer", rng.choice(lawyers) if rng.random() < 0.3 else ""),
            "clinic": svc.get("clinic", rng.choice(clinics) if rng.random() < 0.3 else ""),
            "telematics_available": True, "insured_in_cell": True, "third_party_in_cell": "",
            "crash_pulse_found": True, "crash_delta_v_kmh": 0.0, "speed_at_loss_kmh": 0.0,
            "parked_or_charging_at_loss": False,
            "is_fraud": int(truth[0] != "genuine"), "fraud_type": truth[0], "ring_id": truth[1],
        }
        row.update(facts)
        rows.append(row)

    def genuine_facts(amount: float) -> dict:
        if rng.random() < 0.15:
            return {"telematics_available": False, "insured_in_cell": "", "crash_pulse_found": "",
                    "crash_delta_v_kmh": "", "speed_at_loss_kmh": "", "parked_or_charging_at_loss": ""}
        dv = max(3.0, (amount / 60.0) ** 0.5 * rng.uniform(0.9, 1.6))
        return {"crash_pulse_found": amount >= 1_000 or rng.random() < 0.5, "crash_delta_v_kmh": round(dv, 1),
                "speed_at_loss_kmh": round(rng.uniform(10, 60), 1)}

    for _ in range(genuine):
        ts = T0_MS + rng.randint(0, 364) * DAY_MS + rng.randint(0, DAY_MS - 1)
        amount = rng.lognormvariate(7.8, 0.7)
        claim(ts, people.new(), people.new() if rng.random() < 0.6 else None, amount, genuine_facts(amount),
              ("genuine", ""))

    def ring(kind: str, idx: int) -> None:
        ring_id = f"{kind}-{idx}"
        members = [people.new() for _ in range(rng.randint(3, 4) if kind == "cycle" else rng.randint(4, 7))]
        start = T0_MS + rng.randint(0, 330) * DAY_MS
        svc = {"garage": f"Golden Repair {ring_id}", "lawyer": f"Attorney {ring_id}", "clinic": f"Clinic {ring_id}",
               "tow": rng.choice(tows)}
        n_claims = len(members) if kind == "cycle" else rng.randint(5, 9)
        for k in range(n_claims):
            if kind == "cycle":
                a, b = members[k], members[(k + 1) % len(members)]
            else:
                a, b = rng.sample(members, 2)
            ts = start + k * rng.randint(2, 6) * DAY_MS
            amount = rng.uniform(3_000, 12_000)
            if kind == "phantom":
                facts = {"insured_in_cell": False, "crash_pulse_found": False, "third_party_in_cell": False,
                         "speed_at_loss_kmh": 0.0, "parked_or_charging_at_loss": rng.random() < 0.6}
            elif kind == "staged":
                facts = {"crash_pulse_found": False, "speed_at_loss_kmh": round(rng.uniform(0, 8), 1),
                         "parked_or_charging_at_loss": rng.random() < 0.3}
            else:  # cycle rings stage low-speed bumps billed as big repairs
                facts = {"crash_delta_v_kmh": round(rng.uniform(3, 6), 1), "speed_at_loss_kmh": round(rng.uniform(5, 15), 1)}
            claim(ts, a, b, amount, facts, (f"{kind}_ring", ring_id), **svc)

    for i in range(staged):
        ring("staged", i)
    for i in range(phantom):
        ring("phantom", i)
    for i in range(cycles):
        ring("cycle", i)
    for _ in range(opportunistic):
        ts = T0_MS + rng.randint(0, 364) * DAY_MS
        dv = rng.uniform(4, 9)
        claim(ts, people.new(), people.new(), rng.uniform(9_000, 20_000),
              {"crash_delta_v_kmh": round(dv, 1), "speed_at_loss_kmh": round(rng.uniform(5, 25), 1)},
              ("opportunistic", ""))
    rows.sort(key=lambda r: r["ts_ms"])
    return rows


ENTITY_COLS = [
    "insured_name", "insured_phone", "insured_address", "insured_bank_account", "insured_vehicle_id",
    "third_party_name", "third_party_phone", "third_party_address", "third_party_bank_account",
    "third_party_vehicle_id", "garage", "tow_company", "lawyer", "clinic",
]
