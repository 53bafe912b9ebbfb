"""docs/reliability.md as the chaos runner writes it: a run of one scenario replaces that
scenario's row and texts only, and says when it was re-run (no broker needed)."""

from __future__ import annotations

import re

from voltrisk import chaos as C


def _scenario(name: str, n: int, x: float | None = None) -> dict:
    details = {"recovery_s": 1.0}
    if x is not None:
        details.update(outage_s=600, load_rate=1000, backlog_records=n, processed_during_drain=n, drain_s=10,
                       drain_records_per_s=n // 10, drain_x_realtime=x, startup_s=1, drain_x_realtime_after_startup=x)
    return {"name": name, "produced": n, "accepted": n, "dead_lettered": 0, "stored_unique": n, "lost": 0, "duplicates": 0,
            "max_lag": n, "recovery_s": 1.0, "runner_actions": [f"{name} fault"], "voltrisk_did": f"{name} handled",
            "log_lines": [f"{name} log"], "details": details}


def _result(date: str, scenarios: list[dict], quick: bool = False) -> dict:
    return {"quick": quick, "date_utc": date, "rate": 1000.0, "vehicles": 200, "store_on_tmpfs": True, "elapsed_s": 100,
            "scenarios": scenarios}


def test_a_single_scenario_run_replaces_only_its_rows_and_texts(tmp_path):
    doc = tmp_path / "reliability.md"
    C.write_doc(doc, _result("2026-01-01 00:00 UTC", [_scenario("worker_sigkill", 111), _scenario("catch_up", 222, 2.28)]), "voltrisk chaos")
    C.write_doc(doc, _result("2026-01-02 00:00 UTC", [_scenario("poison_pill", 5)], quick=True), "voltrisk chaos --quick")
    C.write_doc(doc, _result("2026-01-03 00:00 UTC", [_scenario("catch_up", 333, 3.5)]), "voltrisk chaos --scenario catch_up",
                partial=["catch_up"])
    text = doc.read_text()
    full = re.search(r"<!-- chaos:full -->(.*?)<!-- /chaos:full -->", text, re.S).group(1)
    assert "| worker_sigkill | 111 |" in full and "| catch_up | 333 |" in full and "| catch_up | 222 |" not in full
    assert "- date: 2026-01-01 00:00 UTC" in full
    assert "- re-run of catch_up only: 2026-01-03 00:00 UTC" in full
    assert "**3.5x real time**" in full and "2.28x" not in full
    assert full.count("#### catch_up") == 1 and "#### worker_sigkill" in full and "worker_sigkill log" in full
    # the quick section is untouched
    assert "| poison_pill | 5 |" in re.search(r"<!-- chaos:quick -->(.*?)<!-- /chaos:quick -->", text, re.S).group(1)


def test_a_new_scenario_is_added_and_a_newer_rerun_replaces_the_older_note(tmp_path):
    doc = tmp_path / "reliability.md"
    C.write_doc(doc, _result("2026-01-01 00:00 UTC", [_scenario("worker_sigkill", 111)]), "voltrisk chaos")
    for day, n in (("02", 333), ("03", 444)):
        C.write_doc(doc, _result(f"2026-01-{day} 00:00 UTC", [_scenario("catch_up", n, 3.5)]),
                    "voltrisk chaos --scenario catch_up", partial=["catch_up"])
    text = doc.read_text()
    assert "| worker_sigkill | 111 |" in text and "| catch_up | 444 |" in text and "| catch_up | 333 |" not in text
    assert text.index("| worker_sigkill | 111 |") < text.index("| catch_up | 444 |") < text.index("Columns:")
    assert text.count("re-run of catch_up only") == 1 and "re-run of catch_up only: 2026-01-03" in text
    assert text.count("### Catch-up") == 1 and text.index("### Catch-up") < text.index("### What voltrisk did")
    assert text.count("#### catch_up") == 1 and "#### worker_sigkill" in text
