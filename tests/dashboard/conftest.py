"""Warehouses for the dashboard tests: seeded, empty (migrated), and one that is not there."""

from __future__ import annotations

import pytest
from dashboard_seed import free_port, seed, seed_registry, served


def _served(tmp_path_factory, name: str, **seeded):
    root = tmp_path_factory.mktemp(name)
    seed(root / "warehouse", **seeded)
    with served(root / "warehouse", root / "warehouse.log") as url:
        yield url


@pytest.fixture(scope="session")
def seeded_url(tmp_path_factory):
    yield from _served(tmp_path_factory, "dash-seeded")


@pytest.fixture(scope="session")
def confirmed_url(tmp_path_factory):
    """The seeded warehouse plus an alert of a ring holding claims confirmed as fraud."""
    yield from _served(tmp_path_factory, "dash-confirmed", confirmed_ring=True)


@pytest.fixture(scope="session")
def empty_url(tmp_path_factory):
    yield from _served(tmp_path_factory, "dash-empty", with_data=False)


@pytest.fixture
def dead_url():
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def warehouse_at(monkeypatch):
    """Point the dashboard at a warehouse URL for the rest of the test."""
    return lambda url: monkeypatch.setenv("VOLTRISK_DASHBOARD_CLICKHOUSE_URL", url)


@pytest.fixture(scope="session")
def registry_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash-models")
    seed_registry(root)
    return root


@pytest.fixture
def models_at(monkeypatch):
    """Point the pricing registry at a directory for the rest of the test."""
    return lambda root: monkeypatch.setenv("VOLTRISK_MODEL_REGISTRY_DIR", str(root))


@pytest.fixture(autouse=True)
def no_kafka_unless_asked(monkeypatch, request):
    """Pages read consumer lag from Kafka: point them at a closed port unless the test has a broker."""
    if "kafka_bootstrap" not in request.fixturenames:
        monkeypatch.setenv("VOLTRISK_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
