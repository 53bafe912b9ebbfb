"""The supervisor `make up` runs each local service under: real child processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from voltrisk import procs
from voltrisk.supervise import supervise


def _script(tmp_path: Path, body: str) -> list[str]:
    f = tmp_path / "service.py"
    f.write_text(body)
    return [sys.executable, str(f)]


def test_a_service_failing_after_it_settled_is_restarted_until_it_ends_well(tmp_path):
    runs = tmp_path / "runs"
    # each run appends a line; the first two fail after settling, the third ends with 0
    argv = _script(tmp_path, f"""
import sys, time
p = {str(runs)!r}
n = sum(1 for _ in open(p)) if __import__('os').path.exists(p) else 0
open(p, 'a').write('run\\n')
time.sleep(0.3)
sys.exit(3 if n < 2 else 0)
""")
    state = tmp_path / "svc.supervisor.json"
    assert supervise("svc", argv, settle_s=0.2, max_backoff_s=0.2, state_file=str(state)) == 0
    assert runs.read_text().count("run") == 3
    # what `voltrisk status` shows: two restarts, and how the last run ended
    recorded = json.loads(state.read_text())
    assert recorded["restarts"] == 2 and recorded["last_exit"]["code"] == 0 and recorded["last_exit"]["after_s"] >= 0.3


def test_a_service_failing_during_its_start_is_not_restarted(tmp_path):
    runs = tmp_path / "runs"
    argv = _script(tmp_path, f"import sys; open({str(runs)!r}, 'a').write('run\\n'); sys.exit(7)")
    assert supervise("svc", argv, settle_s=30) == 7
    assert runs.read_text().count("run") == 1


def test_sigterm_reaches_the_service_and_ends_the_supervisor(tmp_path):
    seen = tmp_path / "seen"
    argv = _script(tmp_path, f"""
import signal, sys, time
def bye(*_):
    open({str(seen)!r}, 'w').write('term')
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print('up', flush=True)
while True:
    time.sleep(0.05)
""")
    sup = subprocess.Popen([sys.executable, "-m", "voltrisk.supervise", "--name", "svc", "--", *argv],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert sup.stdout.readline().strip() == "up"
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=10) == 0
    finally:
        if sup.poll() is None:
            sup.kill()
    assert seen.read_text() == "term"


def test_the_local_platform_stops_a_supervised_service_and_its_child(tmp_path):
    pidf = tmp_path / "child.pid"
    argv = _script(tmp_path, f"""
import os, time
open({str(pidf)!r}, 'w').write(str(os.getpid()))
while True:
    time.sleep(0.05)
""")
    svc = procs.Service("svc", argv, healthy=pidf.exists, marker=argv[1], start_timeout_s=10)
    pid, started = procs.start(tmp_path, svc)
    assert started and "voltrisk.supervise" in procs._cmdline(pid)
    child = int(pidf.read_text())
    assert procs.supervisor_state(tmp_path, "svc") == {"restarts": 0, "child_pid": child, "last_exit": None}
    assert argv[1] in procs._cmdline(child)
    assert procs.stop(tmp_path, "svc", svc.marker, timeout_s=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and procs._cmdline(child):
        time.sleep(0.05)
    assert procs._cmdline(child) == ""
    assert procs.running_pid(tmp_path, "svc", svc.marker) is None
