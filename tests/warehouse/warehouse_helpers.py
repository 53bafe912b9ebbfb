"""Helpers of the warehouse tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from voltrisk.settings import WarehouseSettings
from warehouse.client import writer_client
from warehouse.migrate import migrate


@contextmanager
def migrated_warehouse(path: Path) -> Iterator:
    """A writer client of a new embedded warehouse at ``path`` with every migration applied."""
    ws = WarehouseSettings(clickhouse_dsn=f"chdb://{path}")
    c = writer_client(ws)
    migrate(c, ws)
    try:
        yield c
    finally:
        c.close()
