"""Entity resolution: turn near-identical raw values into one canonical key.

Claims systems type the same phone, address or account in many ways
(``+86 138-0013-8000`` vs ``13800138000``, ``No. 88 Nanjing Rd.`` vs
``88 nanjing road``). Each ``normalize_*`` function maps a raw value to a
canonical string, or ``None`` when nothing usable is left (empty, placeholder).
Pure functions, no I/O.

>>> normalize_phone("+86 138-0013-8000")
'13800138000'
>>> normalize_address("No. 88  Nanjing Rd., Apt 5")
'88 nanjing road unit 5'
>>> normalize_name("Zhang  Wei")
'zhangwei'
"""

from __future__ import annotations

import re
import unicodedata

# Values that claims handlers type when they do not know: never an identity.
_PLACEHOLDERS = frozenset({"", "na", "n/a", "none", "null", "unknown", "nil", "-", "0", "无", "不详", "未知"})

_MOBILE = re.compile(r"^1[3-9]\d{9}$")


def _clean(raw: str | None) -> str | None:
    """NFKC folds full-width digits and letters (common in Chinese input) to ASCII."""
    if raw is None:
        return None
    text = unicodedata.normalize("NFKC", str(raw)).strip()
    if text.casefold() in _PLACEHOLDERS:
        return None
    return text


def normalize_phone(raw: str | None) -> str | None:
    """Canonical phone: an 11-digit Chinese mobile without country code, or a
    landline with its trunk ``0`` and area code, digits only.

    >>> normalize_phone("0086 (138) 0013 8000")
    '13800138000'
    >>> normalize_phone("+86 21 6123 4567")
    '02161234567'
    """
    text = _clean(raw)
    if text is None:
        return None
    digits = re.sub(r"\D", "", text)
    international = text.lstrip().startswith("+") or digits.startswith("00")
    if digits.startswith("0086"):
        digits, international = digits[4:], True
    elif digits.startswith("86") and (international or len(digits) == 13):
        digits, international = digits[2:], True
    if _MOBILE.match(digits):
        return digits
    if international and digits and not digits.startswith("0"):
        digits = "0" + digits  # +86 21 ... is dialled 021 ... at home
    if len(digits) < 6 or len(set(digits)) == 1:
        return None  # too short or 000000-style filler
    return digits


# Street-type and marker abbreviations, matched as whole tokens after punctuation
# is split off. "st" before a name is "saint" (St Mary Road), elsewhere "street".
_ADDRESS_WORDS = {
    "rd": "road",
    "st": "street",
    "str": "street",
    "ave": "avenue",
    "av": "avenue",
    "blvd": "boulevard",
    "ln": "lane",
    "dr": "drive",
    "hwy": "highway",
    "expy": "expressway",
    "bldg": "building",
    "blk": "block",
    "dist": "district",
    "distr": "district",
    "fl": "floor",
    "flr": "floor",
    "apt": "unit",
    "apartment": "unit",
    "rm": "unit",
    "room": "unit",
    "flat": "unit",
    "ste": "unit",
    "suite": "unit",
    "e": "east",
    "w": "west",
    "n": "north",
    "s": "south",
}
# Chinese address markers written inline: 号 (number), 室 (room), 路 (road), 街 (street).
_CJK_MARKERS = [("室", " unit "), ("号", " "), ("路", " road "), ("街", " street "), ("弄", " lane ")]
_STREET_WORDS = frozenset(_ADDRESS_WORDS.values())
_NUMBER_MARKERS = frozenset({"no", "number", "num", "nr"})
# A trailing city name adds nothing inside one city's claims and is often left out.
_CITIES = frozenset({"shanghai", "beijing", "shenzhen", "guangzhou", "hangzhou", "suzhou", "nanjing", "chengdu",
                     "wuhan", "tianjin", "chongqing", "xian", "上海", "北京", "深圳", "广州", "杭州"})


def normalize_address(raw: str | None) -> str | None:
    """Canonical address: case-folded, punctuation removed, abbreviations
    expanded, house-number markers (``No.``, ``#``) dropped, unit markers
    (``Apt``, ``Rm``, ``Flat``, ``#`` after the street) unified to ``unit``, a
    trailing city name dropped.

    >>> normalize_address("Flat 12B, 7 St Mary St")
    'unit 12b 7 saint mary street'
    """
    text = _clean(raw)
    if text is None:
        return None
    text = text.casefold()
    for marker, word in _CJK_MARKERS:
        text = text.replace(marker, word)
    # "#5" after a street name is a unit; before any word it is the house number
    head, sep, tail = text.partition("#")
    if sep:
        text = head + (" unit " if re.search(r"[a-z]", head) else " ") + tail.replace("#", " ")
    text = re.sub(r"[^\w\s]", " ", text)
    tokens = text.split()
    out: list[str] = []
    for i, tok in enumerate(tokens):
        if tok in _NUMBER_MARKERS and i + 1 < len(tokens) and tokens[i + 1][:1].isdigit():
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok == "st" and nxt.isalpha() and nxt not in _ADDRESS_WORDS and nxt not in _STREET_WORDS:
            out.append("saint")
            continue
        out.append(_ADDRESS_WORDS.get(tok, tok))
    while len(out) > 1 and out[-1] in _CITIES | {"city", "shi", "prc", "china"}:
        out.pop()
    return " ".join(out) or None


def normalize_name(raw: str | None) -> str | None:
    """Canonical person or company name: case-folded with all spacing and
    punctuation removed, so ``Zhang  Wei``, ``ZHANG WEI`` and ``张 伟`` vs
    ``张伟`` collapse. Word order is kept: family-first and given-first
    spellings are different keys (merging them would join strangers).

    >>> normalize_name("Li-Na  WANG")
    'linawang'
    """
    text = _clean(raw)
    if text is None:
        return None
    key = re.sub(r"[\W_]", "", text.casefold())
    return key or None


def normalize_bank(raw: str | None) -> str | None:
    """Canonical bank account: digits and letters only, upper-case (IBAN style).

    >>> normalize_bank("6222 0212 3456 7890 123")
    '6222021234567890123'
    """
    text = _clean(raw)
    if text is None:
        return None
    key = re.sub(r"[^0-9A-Za-z]", "", text).upper()
    return key if len(key) >= 6 and len(set(key)) > 1 else None


def normalize_vehicle(raw: str | None) -> str | None:
    """Canonical VIN, plate or pseudonymous vehicle id: upper-case, no spacing."""
    text = _clean(raw)
    if text is None:
        return None
    return re.sub(r"[\s\-·]", "", text).upper() or None


NORMALIZERS = {
    "phone": normalize_phone,
    "address": normalize_address,
    "name": normalize_name,
    "bank": normalize_bank,
    "vehicle": normalize_vehicle,
    "garage": normalize_name,
    "tow": normalize_name,
    "lawyer": normalize_name,
    "clinic": normalize_name,
}

# Column-name fragments that say which kind of entity a claims-table column holds.
_KIND_HINTS = [
    ("phone", "phone"), ("mobile", "phone"), ("tel", "phone"),
    ("address", "address"), ("addr", "address"),
    ("bank", "bank"), ("account", "bank"), ("iban", "bank"),
    ("vehicle", "vehicle"), ("vin", "vehicle"), ("plate", "vehicle"),
    ("garage", "garage"), ("repair", "garage"), ("body_shop", "garage"),
    ("tow", "tow"), ("lawyer", "lawyer"), ("attorney", "lawyer"), ("solicitor", "lawyer"),
    ("clinic", "clinic"), ("hospital", "clinic"), ("doctor", "clinic"),
    ("name", "name"),
]


def kind_of_column(column: str) -> str:
    """Entity kind for a claims-table column (``third_party_phone`` -> ``phone``);
    an unrecognised column is its own kind, compared as a case-folded string."""
    col = column.casefold()
    for hint, kind in _KIND_HINTS:
        if hint in col:
            return kind
    return col


def normalize(kind: str, raw: str | None) -> str | None:
    """Canonical key for ``raw`` of entity ``kind``; unknown kinds are case-folded
    and stripped of spacing."""
    fn = NORMALIZERS.get(kind, normalize_name)
    return fn(raw)


def name_signature(raw: str | None) -> str | None:
    """Order-free form of a name for identity keys: the sorted letters of the
    normalised name, so ``Wei Wang`` (given-first) matches ``WANG Wei``. Alone it
    could join anagrams; inside ``person_key`` a contact detail must match too.

    >>> name_signature("Xiu Ying Zhao") == name_signature("ZhaoXiuYing")
    True
    """
    n = normalize_name(raw)
    return None if n is None else "".join(sorted(n))


def person_key(name: str | None, phone: str | None = None, bank: str | None = None,
               address: str | None = None) -> str | None:
    """Identity of a person: the name's signature plus the first of phone, bank
    account or address. A name alone is not an identity (``Wang Wei`` is shared by
    hundreds of thousands of people), so a party with only a name gets no key.

    >>> person_key("Wang  Wei", phone="+86 139 1111 2222") == person_key("Wei WANG", phone="13911112222")
    True
    """
    n = name_signature(name)
    if n is None:
        return None
    for kind, raw in (("phone", phone), ("bank", bank), ("address", address)):
        key = normalize(kind, raw)
        if key is not None:
            return f"{n}|{key}"
    return None
