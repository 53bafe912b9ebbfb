"""Shared, session-scoped simulator runs (each a few seconds) for the simulator tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from simulators import drivers, fleet, scenario

START_MS = 1_793_462_400_000  # 2026-11-01 00:00 Shanghai


@pytest.fixture(scope="session")
def policies():
    return drivers.load_policies()


@dataclass
class Run:
    pop: drivers.Population
    events: list
    truth: scenario.Truth
    cfg: fleet.FleetConfig


@pytest.fixture(scope="session")
def small_run(policies) -> Run:
    """16 vehicles x 4 days with crashes made 200x likelier (so a short run has some) and 3 rings."""
    pop = drivers.build_population(16, seed=5, policies=policies)
    cfg = fleet.FleetConfig(start_ms=START_MS, days=4, crash_scale=200.0)
    scen = scenario.Scenario(pop, cfg, scenario.ClaimsConfig(rings=3, ring_size=(4, 6)))
    events = list(scen.events())
    return Run(pop, events, scen.truth, cfg)
