"""Warehouse clients.

Two modes, one code path (DESIGN §3): a ClickHouse server over HTTP(S), or the
embedded chDB store, both behind clickhouse-connect's client interface. Only the
warehouse process opens the chDB directory; every other reader goes through its
read-only HTTP endpoint with an ordinary HTTP client.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from voltrisk.errors import UserError
from voltrisk.settings import WarehouseSettings


def embedded_path(dsn: str) -> Path | None:
    """The chDB data directory of a ``chdb://`` DSN, or None for a server DSN.

    >>> embedded_path("chdb://.voltrisk/warehouse")
    PosixPath('.voltrisk/warehouse')
    >>> embedded_path("chdb:///var/lib/voltrisk")
    PosixPath('/var/lib/voltrisk')
    >>> embedded_path("http://localhost:8123") is None
    True
    """
    if not dsn.startswith("chdb:"):
        return None
    rest = dsn[len("chdb://"):]
    return Path(rest) if rest else Path(".voltrisk/warehouse")


def writer_client(settings: WarehouseSettings):
    """A read-write clickhouse-connect client for the process that owns the store."""
    import clickhouse_connect

    path = embedded_path(settings.clickhouse_dsn)
    if path is not None:
        path = path.resolve()
        path.mkdir(parents=True, exist_ok=True)
        try:
            return clickhouse_connect.get_client(dsn=f"chdb://{path}", settings={"async_insert": 0})
        except Exception as exc:  # chDB raises a generic error for a locked directory
            if "lock" in str(exc).lower():
                raise UserError(
                    f"the warehouse directory {path} is in use by another process; "
                    "stop it (`make down`) or set VOLTRISK_CLICKHOUSE_DSN to another path"
                ) from None
            raise
    return http_client(settings.clickhouse_dsn, password=settings.clickhouse_password)


def http_client(url: str, user: str | None = None, password=None):
    """A clickhouse-connect HTTP client for a server or the local read-only endpoint."""
    import clickhouse_connect

    u = urlparse(url)
    if u.scheme not in ("http", "https"):
        raise UserError(f"{url!r} is not a ClickHouse HTTP URL; use http(s)://host:port[/database]")
    secret = password.get_secret_value() if password is not None and hasattr(password, "get_secret_value") else password
    return clickhouse_connect.get_client(
        host=u.hostname or "127.0.0.1",
        port=u.port or (8443 if u.scheme == "https" else 8123),
        secure=u.scheme == "https",
        username=user or u.username or "default",
        password=secret or u.password or "",
        database=(u.path or "/").strip("/") or "default",
        compress=False,
        # the endpoint is read-only; don't ask it to change session settings
        autogenerate_session_id=False,
        send_receive_timeout=float(os.environ.get("VOLTRISK_CLICKHOUSE_TIMEOUT_S", "60")),
    )
