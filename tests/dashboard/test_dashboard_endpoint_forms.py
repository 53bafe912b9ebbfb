"""The read-only endpoint takes a query and its parameters as form fields, as ClickHouse
does: clickhouse-connect sends them so once the parameters pass 4 KiB (a page asking
about hundreds of vehicles); a write sent that way is still refused."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from warehouse.client import http_client


def test_a_query_with_parameters_past_the_url_limit_answers_as_with_few(seeded_url):
    ch = http_client(seeded_url)
    counts = dict(ch.query("SELECT vehicle_id, count() FROM trips GROUP BY vehicle_id").result_rows)
    assert counts, "the seeded warehouse has trips"
    q = "SELECT count() FROM trips WHERE vehicle_id IN {ids:Array(String)}"
    decoys = [f"v1-unknown-{i:06d}-" + "x" * 40 for i in range(200)]
    assert sum(len(d) for d in decoys) > 4096  # the client now puts the parameters in a form
    few = ch.query(q, parameters={"ids": list(counts)}).result_rows[0][0]
    many = ch.query(q, parameters={"ids": decoys + list(counts)}).result_rows[0][0]
    assert few == many == sum(counts.values())


@pytest.mark.parametrize("encoding", ["multipart", "urlencoded"])
def test_a_write_sent_as_a_form_is_refused(seeded_url, encoding):
    sql = "INSERT INTO trips (vehicle_id) VALUES ('v1-forged')"
    if encoding == "multipart":
        boundary = "voltrisk-test-boundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\n{sql}\r\n--{boundary}--\r\n").encode()
        ctype = f"multipart/form-data; boundary={boundary}"
    else:
        from urllib.parse import urlencode

        body, ctype = urlencode({"query": sql}).encode(), "application/x-www-form-urlencoded"
    req = urllib.request.Request(seeded_url + "/", data=body, headers={"Content-Type": ctype}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 403 and b"read-only" in refused.value.read()
    assert http_client(seeded_url).query("SELECT count() FROM trips WHERE vehicle_id = 'v1-forged'").result_rows[0][0] == 0
