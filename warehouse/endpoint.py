"""Read-only ClickHouse HTTP endpoint over the embedded chDB store.

The warehouse process owns the chDB directory (only one process may open it).
Every other reader — the dashboard, notebooks, ``clickhouse-connect`` in tests —
talks to this endpoint exactly as it would to a ClickHouse server, so the code
path is the same in embedded and cluster mode.

Read-only is enforced three times: the statement, read as ClickHouse's lexer reads
it (``_bare``), must be one read (SELECT, WITH, SHOW, DESCRIBE, EXISTS, EXPLAIN); table
functions that reach outside the store (file, url, s3, remote, ...) and INTO OUTFILE
are refused; and the chDB session itself runs with ``readonly=2`` so anything that
slips through still cannot write (it does not stop table functions: the checks do).
Setting names are checked, and requests from web pages (``Origin``, ``Sec-Fetch-Site``) refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from multidict import MultiDict

log = logging.getLogger("voltrisk.warehouse.endpoint")

_READ_VERBS = {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"}
_OUTSIDE_FUNCTIONS = re.compile(
    r"\b(file\w*|url\w*|s3\w*|gcs\w*|cosn|oss|hdfs\w*|azureBlobStorage\w*|remote\w*|cluster\w*|mysql\w*|"
    r"postgresql\w*|sqlite|mongodb|redis|jdbc|odbc|executable\w*|input|iceberg\w*|deltaLake\w*|hudi\w*|paimon\w*|"
    r"arrowFlight\w*|prometheus\w*|ytsaurus\w*|python)\s*\(",
    re.I,
)
_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.I)
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
# URL parameters that are HTTP-transport concerns, not query settings
_TRANSPORT_PARAMS = {
    "query", "database", "default_format", "session_id", "session_timeout", "session_check", "query_id",
    "compress", "decompress", "enable_http_compression", "wait_end_of_query", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "user", "password", "buffer_size", "quota_key",
}


class ReadOnlyViolation(Exception):
    code = 164


def check_read_only(sql: str) -> None:
    """Refuse anything but a single read statement.

    >>> check_read_only("SELECT count() FROM telemetry_dynamics")
    >>> check_read_only("INSERT INTO dlq VALUES (1)")
    Traceback (most recent call last):
    ...
    warehouse.endpoint.ReadOnlyViolation: this endpoint is read-only (INSERT refused): writes go through Kafka topics
    """
    bare = _bare(sql).strip().rstrip(";").strip()
    if ";" in bare:
        raise ReadOnlyViolation("this endpoint accepts one statement per request")
    verb = bare.split(None, 1)[0].upper() if bare else ""
    verb = verb.lstrip("(")
    if verb not in _READ_VERBS:
        raise ReadOnlyViolation(f"this endpoint is read-only ({verb or 'empty query'} refused): writes go through Kafka topics")
    m = _OUTSIDE_FUNCTIONS.search(bare)
    if m:
        raise ReadOnlyViolation(f"table function {m.group(1)}() is not available on this endpoint")
    if re.search(r"\bINTO\s+OUTFILE\b", bare, re.I):
        raise ReadOnlyViolation("INTO OUTFILE is not available on this endpoint")


def _bare(sql: str) -> str:
    """``sql`` as the checks read it, in one pass from the left as ClickHouse's lexer goes:
    comments out, string literals emptied, quoted identifiers unquoted (a function named
    in backticks is still that function). Any difference with the engine's reading would
    let a string hide code from the checks, so what this does not read exactly as the
    engine does is refused: ``#`` comments and ``$tag$`` strings (a ``#`` or ``$`` outside
    strings), a comment inside a ``/* */`` comment (the engine nests them), and an
    unterminated string or comment."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            out.append(" ")
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                raise ReadOnlyViolation("the query has an unterminated comment")
            if "/*" in sql[i + 2:j]:
                raise ReadOnlyViolation("nested comments are not accepted on this endpoint")
            i = j + 2
            out.append(" ")
        elif c in "#$":
            raise ReadOnlyViolation(f"{c} outside a quoted string is not accepted on this endpoint "
                                    "(# comments and $ strings: use -- and quotes)")
        elif c in "'\"`":
            j = i + 1
            while True:
                if j >= n:
                    raise ReadOnlyViolation("the query has an unterminated quoted string or name")
                if sql[j] == "\\":
                    j += 2
                elif sql[j] == c and sql.startswith(c * 2, j):
                    j += 2
                elif sql[j] == c:
                    break
                else:
                    j += 1
            out.append("''" if c == "'" else " " + sql[i + 1:j] + " ")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class ReadOnlyEndpoint:
    """aiohttp application answering the ClickHouse HTTP protocol from a chDB session."""

    def __init__(self, path: str):
        from chdb import session

        self._session = session.Session(str(path))
        self._session.query("SET readonly = 2")
        # chDB connections are not safe for concurrent use: one reader thread
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ch-read")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("GET", "/ping", self._ping)
        app.router.add_route("*", "/", self._query)
        return app

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def _query(self, request: web.Request) -> web.Response:
        params = request.rel_url.query
        body = ""
        if request.content_type in _FORM_TYPES:
            # ClickHouse clients move the query and its parameters into form fields when the
            # parameters would make the URL too long (clickhouse-connect past 4 KiB of them)
            params = MultiDict(params)
            for name, value in (await request.post()).items():
                params[name] = value if isinstance(value, str) else value.file.read().decode("utf-8", "replace")
        elif request.can_read_body:
            body = (await request.read()).decode("utf-8", "replace")
        sql = "\n".join(part for part in (params.get("query", ""), body) if part.strip())
        if not sql.strip():
            return web.Response(text="Ok.\n")
        qid = params.get("query_id") or str(uuid.uuid4())
        m = _FORMAT.search(sql)
        fmt = m.group(1) if m else params.get("default_format", "TabSeparated")
        if m:
            sql = sql[: m.start()]
        try:
            check_read_only(sql)
        except ReadOnlyViolation as exc:
            return self._error(403, exc.code, str(exc), "READONLY", qid)
        query_params = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in params.items() if k not in _TRANSPORT_PARAMS and not k.startswith("param_")}
        bad = [k for k in settings if not _SETTING_NAME.match(k)]
        if bad:
            return self._error(400, 115, f"{bad[0][:64]!r} is not a setting name", "UNKNOWN_SETTING", qid)
        # a web page's request (browsers send Origin, or Sec-Fetch-Site, even for an <img>'s GET)
        if request.headers.get("Origin") or request.headers.get("Sec-Fetch-Site", "none") != "none":
            return self._error(403, 164, "requests from web pages are refused", "READONLY", qid)
        if settings:
            # forward per-query settings the client asked for; readonly=2 refuses any change to readonly itself
            sql = f"{sql}\nSETTINGS " + ", ".join(f"{k} = {_setting_literal(v)}" for k, v in settings.items())
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._pool, self._run, sql, fmt, query_params)
        except Exception as exc:  # chDB reports every server-side error as an exception with the ClickHouse text
            text = str(exc)
            cm = re.search(r"Code: (\d+)", text)
            code = int(cm.group(1)) if cm else 1000
            return self._error(403 if code == 164 else 500, code, text, "", qid)
        data = result.bytes()
        summary = {
            "read_rows": str(result.rows_read()), "read_bytes": str(result.bytes_read()),
            "written_rows": "0", "written_bytes": "0", "total_rows_to_read": str(result.rows_read()),
            "result_rows": "0", "result_bytes": str(len(data)), "elapsed_ns": str(int(result.elapsed() * 1e9)),
        }
        headers = {
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Query-Id": qid,
            "X-ClickHouse-Server-Display-Name": "voltrisk-embedded",
            "X-ClickHouse-Summary": json.dumps(summary),
            "Content-Type": "application/octet-stream" if fmt in ("Native", "RowBinary", "Arrow", "Parquet") else "text/plain; charset=UTF-8",
        }
        return web.Response(body=data, headers=headers)

    def _run(self, sql: str, fmt: str, query_params: dict):
        if query_params:
            return self._session.query(sql, fmt, params=query_params)
        return self._session.query(sql, fmt)

    @staticmethod
    def _error(status: int, code: int, message: str, name: str, qid: str) -> web.Response:
        text = message if message.startswith("Code:") else f"Code: {code}. DB::Exception: {message}. ({name or 'ERROR'})"
        return web.Response(
            status=status,
            text=text + "\n",
            headers={"X-ClickHouse-Exception-Code": str(code), "X-ClickHouse-Query-Id": qid},
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._session.close()


def _setting_literal(value: str) -> str:
    return value if re.fullmatch(r"-?\d+(\.\d+)?", value) else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
