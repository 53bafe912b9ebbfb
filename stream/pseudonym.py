"""VIN pseudonymisation and raw-VIN redaction.

A vehicle's id after the ingest gate is ``v<key version>-<32 hex>``: the first
128 bits of HMAC-SHA256(key, normalised VIN). Without the key the VIN cannot be
recovered or even confirmed by hashing candidate VINs (VINs have little entropy,
so an unkeyed hash would be reversible by enumeration). Rotating the key means a
new ``pseudonym_key_version``; ids of different versions never collide because
the version is part of the id.
"""

from __future__ import annotations

import hashlib
import hmac
import re

# ISO 3779: 17 characters, digits and capitals except I, O and Q
_VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
# A VIN-shaped token anywhere in bytes: 17 VIN characters (either case) with at
# least one letter and one digit, not part of a longer alphanumeric run. Requiring
# both keeps 17-digit account and phone numbers from being masked.
_VIN_TOKEN = re.compile(
    rb"(?<![A-Za-z0-9])(?=[A-HJ-NPR-Za-hj-npr-z0-9]{0,16}[0-9])(?=[A-HJ-NPR-Za-hj-npr-z0-9]{0,16}[A-HJ-NPR-Za-hj-npr-z])"
    rb"[A-HJ-NPR-Za-hj-npr-z0-9]{17}(?![A-Za-z0-9])"
)
_MASK = b"*" * 17
_CACHE_LIMIT = 200_000


def normalise_vin(raw: str) -> str | None:
    """Upper-cased, stripped VIN, or None when it is not VIN-shaped.

    >>> normalise_vin(" ltest00000a000001 ")
    'LTEST00000A000001'
    >>> normalise_vin("LTEST00000O000001") is None  # O is not a VIN character
    True
    """
    vin = raw.strip().upper()
    return vin if _VIN.fullmatch(vin) else None


def redact_vins(data: bytes) -> bytes:
    """Mask every VIN-shaped token with 17 asterisks, keeping byte offsets.

    >>> redact_vins(b'{"event_id":"LTEST00000A000001-7"}')
    b'{"event_id":"*****************-7"}'
    """
    return _VIN_TOKEN.sub(_MASK, data)


def contains_vin(text: str) -> bool:
    """True when ``text`` holds a VIN-shaped token."""
    return _VIN_TOKEN.search(text.encode("utf-8", "surrogatepass")) is not None


class Pseudonymiser:
    """Keyed VIN -> pseudonymous vehicle id, with a bounded memo (fleets resend
    the same few thousand VINs all day, and HMAC is the costliest step)."""

    __slots__ = ("_key", "_prefix", "_memo")

    def __init__(self, key: bytes, key_version: int) -> None:
        if not key:
            raise ValueError("pseudonym key is empty: set VOLTRISK_PSEUDONYM_KEY")
        self._key = key
        self._prefix = f"v{key_version}-"
        self._memo: dict[str, str] = {}

    @property
    def prefix(self) -> str:
        return self._prefix

    def vehicle_id(self, vin: str) -> str:
        """Pseudonym of an already normalised VIN (see ``normalise_vin``)."""
        pid = self._memo.get(vin)
        if pid is None:
            digest = hmac.new(self._key, vin.encode("ascii"), hashlib.sha256).hexdigest()
            pid = self._prefix + digest[:32]
            if len(self._memo) >= _CACHE_LIMIT:
                self._memo.clear()
            self._memo[vin] = pid
        return pid

    def opaque(self, data: bytes) -> str:
        """Pseudonym of arbitrary key bytes that are not a valid VIN (dead-letter
        keys): still keyed, so a near-VIN with a typo never appears in clear."""
        return self._prefix + "x" + hmac.new(self._key, data, hashlib.sha256).hexdigest()[:31]
