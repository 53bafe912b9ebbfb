"""Model registry: versioned scorer artefacts on disk, promotion, hot reload.

Layout under the registry root (default ``.voltrisk/models``)::

    <name>/<version>/model.json   the scorer state (``Scorer.to_state()``)
    <name>/<version>/meta.json    features, training-data fingerprint, metrics, status
    <name>/PRODUCTION             the version in production (one line)

Status moves candidate → production → retired. ``promote`` writes ``PRODUCTION`` with
an atomic rename, so a worker's ``ProductionModel`` notices the change with one
``stat`` call and swaps the model in without a restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from pricing.scorers import Scorer, scorer_from_state

Status = Literal["candidate", "production", "retired"]


log = logging.getLogger("voltrisk.pricing")


class FeatureMismatchError(ValueError):
    """A model's feature list differs from the caller's: scoring it would be silently wrong."""


@dataclass
class ModelVersion:
    name: str
    version: int
    kind: str
    features: list[str]
    data_fingerprint: str
    metrics: dict[str, Any]
    status: Status = "candidate"
    created_utc: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    promoted_utc: str | None = None


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of a training table (columns, dtypes and every value), row count in front.

    >>> data_fingerprint(pd.DataFrame({"a": [1, 2]})) == data_fingerprint(pd.DataFrame({"a": [1, 2]}))
    True
    >>> data_fingerprint(pd.DataFrame({"a": [1, 2]})) == data_fingerprint(pd.DataFrame({"a": [1, 3]}))
    False
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return f"{len(frame)}:{digest.hexdigest()[:16]}"


def version_label(name: str, version: int) -> str:
    """How a score row names the model version that computed it (``scorer`` of ``scores.ubi.v1``).

    >>> version_label("telematics", 3)
    'telematics@v3'
    """
    return f"{name}@v{version}"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def check_features(meta: ModelVersion, expected: list[str] | tuple[str, ...]) -> None:
    """Raise ``FeatureMismatchError`` naming what is missing and what is extra."""
    if set(meta.features) != set(expected):
        missing = sorted(set(meta.features) - set(expected))
        extra = sorted(set(expected) - set(meta.features))
        raise FeatureMismatchError(
            f"model {meta.name} v{meta.version} was trained on features {meta.features}, but the caller provides "
            f"{list(expected)} (model needs but caller lacks: {missing}; caller has but model does not use: {extra}). "
            f"Retrain on the caller's features or promote a version trained on them."
        )


class Registry:
    """Versioned model artefacts under one root directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _dir(self, name: str, version: int) -> Path:
        return self.root / name / str(version)

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.is_dir() else []

    def register(self, name: str, scorer: Scorer, data_fingerprint: str, metrics: dict[str, Any]) -> ModelVersion:
        """Store a fitted scorer as the next version of ``name``, status candidate."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"model name {name!r} must be a plain non-empty name (no '/', no leading '.')")
        version = (self.versions(name) or [0])[-1] + 1
        folder = self._dir(name, version)
        folder.mkdir(parents=True)
        meta = ModelVersion(name, version, scorer.kind, list(scorer.features), data_fingerprint, metrics)
        _write_atomic(folder / "model.json", json.dumps(scorer.to_state()))
        _write_atomic(folder / "meta.json", json.dumps(asdict(meta), indent=1))
        return meta

    def meta(self, name: str, version: int) -> ModelVersion:
        path = self._dir(name, version) / "meta.json"
        if not path.exists():
            known = self.versions(name)
            raise KeyError(f"no model {name} v{version} under {self.root} (versions of {name}: {known or 'none'})")
        return ModelVersion(**json.loads(path.read_text()))

    def models(self) -> list[ModelVersion]:
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        return [self.meta(n, v) for n in names for v in self.versions(n)]

    def production_version(self, name: str) -> int | None:
        pointer = self.root / name / "PRODUCTION"
        return int(pointer.read_text().strip()) if pointer.exists() else None

    def promote(self, name: str, version: int, expected_features: list[str] | tuple[str, ...] | None = None,
                kind: str | None = None) -> ModelVersion:
        """Make ``version`` the production model of ``name``; the previous one is retired.
        With ``expected_features`` / ``kind`` (what the model's consumer feeds it and needs),
        a version that does not fit is refused before anything changes: promoted, its
        consumers would keep serving the retired version, and fail to start on it."""
        meta = self.meta(name, version)
        if meta.status == "retired":
            raise ValueError(f"{name} v{version} is retired; register it again to bring it back as a candidate")
        if expected_features is not None:
            check_features(meta, expected_features)
        if kind is not None and meta.kind != kind:
            raise ValueError(f"{name} v{version} is a {meta.kind} model; its consumers need a {kind} model")
        previous = self.production_version(name)
        if previous is not None and previous != version:
            old = self.meta(name, previous)
            old.status = "retired"
            _write_atomic(self._dir(name, previous) / "meta.json", json.dumps(asdict(old), indent=1))
        meta.status, meta.promoted_utc = "production", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _write_atomic(self._dir(name, version) / "meta.json", json.dumps(asdict(meta), indent=1))
        _write_atomic(self.root / name / "PRODUCTION", f"{version}\n")
        return meta

    def load(self, name: str, version: int, expected_features: list[str] | tuple[str, ...] | None = None) -> Scorer:
        """The fitted scorer of ``name`` v``version``; refused if its features differ from ``expected_features``."""
        meta = self.meta(name, version)
        if expected_features is not None:
            check_features(meta, expected_features)
        return scorer_from_state(json.loads((self._dir(name, version) / "model.json").read_text()))


class ProductionModel:
    """The production version of one model, reloaded when a new version is promoted.

    ``get()`` costs one ``stat`` of the ``PRODUCTION`` pointer (at most every
    ``check_interval_s``); when the pointer changed it loads the new version. A newly
    promoted model whose features do not match is refused: the worker keeps scoring
    with the version it has and ``last_error`` says why.
    """

    def __init__(self, registry: Registry, name: str, features: list[str] | tuple[str, ...], check_interval_s: float = 1.0,
                 kind: str | None = None) -> None:
        self.registry, self.name, self.features, self.kind = registry, name, tuple(features), kind
        self.check_interval_s = check_interval_s
        self.last_error: str | None = None
        self._current: tuple[int, Scorer] | None = None  # (version, scorer), swapped as one
        self._stamp: tuple[int, int] | None = None
        self._checked_at = float("-inf")

    @property
    def version(self) -> int | None:
        return self._current[0] if self._current else None

    def get(self) -> Scorer:
        return self.current()[1]

    def current(self) -> tuple[int, Scorer]:
        """``(version, scorer)`` in production, as one pair: ``version`` read apart from
        the scorer may already name a version promoted in between."""
        now = time.monotonic()
        if self._current is None or now - self._checked_at >= self.check_interval_s:
            self._checked_at = now
            self._refresh()
        current = self._current
        if current is None:
            raise LookupError(self.last_error or f"model {self.name} has no production version under {self.registry.root}")
        return current

    def _refresh(self) -> None:
        pointer = self.registry.root / self.name / "PRODUCTION"
        try:
            stat = pointer.stat()
        except FileNotFoundError:
            self.last_error = f"model {self.name} has no production version under {self.registry.root}: run `voltrisk pricing promote`"
            return
        stamp = (stat.st_mtime_ns, stat.st_ino)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        version = self.registry.production_version(self.name)
        try:
            scorer = self.registry.load(self.name, version, self.features)
            if self.kind is not None and scorer.kind != self.kind:
                raise FeatureMismatchError(f"model {self.name} v{version} is a {scorer.kind} model, not a {self.kind} one")
        except FeatureMismatchError as exc:
            if self._current is None:
                raise
            self.last_error = str(exc)
            log.error("pricing: %s; still serving %s v%s", exc, self.name, self.version)
            return
        self._current, self.last_error = (version, scorer), None
