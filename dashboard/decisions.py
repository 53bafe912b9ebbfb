"""The alert status workflow: which moves are allowed, and the ``fraud.decisions.v1``
record for one. Pure functions; ``dashboard.bus.publish`` sends the record."""

from __future__ import annotations

import time
import uuid

import msgspec

from stream import topics
from stream.records import DecisionV1

STATUSES = ("new", "investigating", "confirmed", "dismissed")
# the queue's statuses (view fraud_queue): the decisions' own, and "reopened" for an
# alert confirmed or dismissed before its ring grew and the engine alerted it again
QUEUE_STATUSES = ("new", "reopened", "investigating", "confirmed", "dismissed")
OPEN_STATUSES = ("new", "reopened", "investigating")
# the workflow: which statuses an alert may move to from its current one
NEXT_STATUSES = {
    "new": ("investigating", "dismissed"),
    "reopened": ("investigating", "dismissed"),
    "investigating": ("confirmed", "dismissed"),
    "confirmed": ("investigating",),
    "dismissed": ("investigating",),
}


class DecisionRefused(ValueError):
    """A status change the workflow does not allow, or a record the contract refuses."""


def decision(alert_id: str, current: str, status: str, investigator: str, note: str = "", now_ms: int | None = None,
             alert_version: int = 0) -> DecisionV1:
    """A validated decision record for moving ``alert_id`` from ``current`` to ``status``;
    ``alert_version``: the version of the alert on screen (a later one reopens the decision)."""
    if status not in NEXT_STATUSES.get(current, ()):
        allowed = ", ".join(NEXT_STATUSES.get(current, ())) or "nothing"
        raise DecisionRefused(f"alert {alert_id} is {current}: it can move to {allowed}, not to {status}")
    rec = DecisionV1(event_id=uuid.uuid4().hex, ts_ms=now_ms if now_ms is not None else int(time.time() * 1000),
                     alert_id=alert_id, status=status, investigator=investigator.strip(), note=note.strip(),
                     alert_version=alert_version)
    try:
        # the same checks the contract's consumers apply (lengths, allowed values)
        return msgspec.json.decode(msgspec.json.encode(rec), type=DecisionV1)
    except msgspec.ValidationError as exc:
        raise DecisionRefused(f"decision on alert {alert_id} is not a valid {topics.DECISIONS.name} record: {exc}") from None
