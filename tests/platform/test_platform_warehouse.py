"""Warehouse: migrations, the read-only HTTP endpoint, the locked-directory error."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from voltrisk.errors import UserError
from voltrisk.settings import WarehouseSettings
from warehouse.client import http_client, writer_client
from warehouse.migrate import discover, drift, migrate


def test_migrations_apply_once_and_are_recorded(tmp_path):
    s = WarehouseSettings(clickhouse_dsn=f"chdb://{tmp_path / 'wh'}")
    client = writer_client(s)
    try:
        first = migrate(client, s)
        assert [m.version for m in first] == [m.version for m in discover()]
        assert migrate(client, s) == []
        recorded = client.query("SELECT version FROM schema_migrations FINAL ORDER BY version").result_rows
        assert [r[0] for r in recorded] == [m.version for m in discover()]
        tables = {r[0] for r in client.query("SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows}
        assert {"telemetry_dynamics", "telemetry_state", "claims_fnol", "dlq", "vehicle_rollup", "pipeline_minute"} <= tables
        assert "vehicle_activity" not in tables  # dropped by 0042: it hashed every event id on insert
        ttl = client.query("SHOW CREATE TABLE telemetry_dynamics").result_rows[0][0]
        assert f"`lat` Float64 TTL toDateTime(ts) + toIntervalDay({s.raw_position_ttl_days})" in ttl
        assert drift(client) == []
    finally:
        client.close()


def test_locked_warehouse_directory_is_one_clear_sentence(tmp_path):
    path = tmp_path / "wh"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import clickhouse_connect,time; c=clickhouse_connect.get_client(dsn='chdb://{path}'); print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(UserError, match=f"the warehouse directory {path} is in use by another process"):
            writer_client(WarehouseSettings(clickhouse_dsn=f"chdb://{path}"))
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.integration
def test_read_only_endpoint_serves_reads_and_refuses_writes(warehouse_proc):
    c = http_client(warehouse_proc.url)
    assert c.query("SELECT count() FROM telemetry_dynamics").result_rows == [(0,)]
    assert c.query("SELECT {x:UInt32} * 2", parameters={"x": 21}).result_rows == [(42,)]
    hostile = "x' OR 1=1 --"
    assert c.query("SELECT count() FROM telemetry_dynamics WHERE vehicle_id = {v:String}", parameters={"v": hostile}).result_rows == [(0,)]
    for sql, expected in [
        ("INSERT INTO dlq (reason) VALUES ('x')", "read-only (INSERT refused)"),
        ("DROP TABLE dlq", "read-only (DROP refused)"),
        ("ALTER TABLE dlq DELETE WHERE 1", "read-only (ALTER refused)"),
        ("SELECT * FROM file('/etc/hostname', 'LineAsString')", "table function file() is not available"),
        ("SELECT 1; DROP TABLE dlq", "one statement per request"),
        ("SELECT 1 SETTINGS readonly = 0", "readonly"),
    ]:
        with pytest.raises(Exception, match=re.escape(expected)):
            c.command(sql) if not sql.startswith("SELECT") else c.query(sql)
    assert c.query("SELECT count() FROM system.tables WHERE name = 'dlq'").result_rows == [(1,)]


def test_the_endpoint_reads_queries_as_clickhouse_does_and_refuses_the_ways_around_it(warehouse_proc):
    """A comment marker inside a string, a function name in quotes, a statement hidden
    behind a string, a setting name carrying SQL, a request from a web page: each was a
    way to reach files or the network through the read-only endpoint."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlencode

    def status(params: list[tuple[str, str]], headers: dict | None = None) -> tuple[int, str]:
        req = urllib.request.Request(warehouse_proc.url + "/?" + urlencode(params), headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    for sql, expected in [
        ("SELECT '--', * FROM file('/etc/hostname', 'LineAsString')", "table function file()"),
        ("SELECT * FROM `url`('http://127.0.0.1:1/', 'LineAsString')", "table function url()"),
        ("SELECT * FROM \"file\"('/etc/hostname', 'LineAsString')", "table function file()"),
        ("SELECT 'x' WHERE notEmpty('--') INTO OUTFILE '/tmp/voltrisk-outfile' APPEND", "INTO OUTFILE"),
        ("SELECT '--'; SELECT 2", "one statement per request"),
        ("SELECT * FROM azureBlobStorageCluster('a', 'b')", "azureBlobStorageCluster()"),
        ("SELECT $a$ -- $a$, * FROM file('/etc/hostname', 'LineAsString')", "$ outside a quoted string"),
        ("SELECT 1 # '\n, * FROM file('/etc/hostname', 'LineAsString') -- '", "# outside a quoted string"),
        ("SELECT 1 /* /* */ ' */, * FROM file('/etc/hostname', 'LineAsString') -- '", "nested comments"),
    ]:
        code, text = status([("query", sql)])
        assert code == 403 and expected in text, (sql, code, text)
    code, text = status([("query", "SELECT * FROM (SELECT 1"),
                         ("max_threads = 1) AS a, file('/etc/hostname', 'LineAsString') AS b --", "1")])
    assert code == 400 and "is not a setting name" in text, text
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        code, text = status([("query", "SELECT 1")], headers)
        assert code == 403 and "web pages" in text, text
    assert status([("query", "SELECT 'a--b', `name` FROM system.tables WHERE name = 'dlq'")]) == (200, "a--b\tdlq\n")
