"""Background services of the local platform: PID files, logs, health waits.

Each service started by ``voltrisk up`` (or ``voltrisk broker start``) runs in
its own session with its PID in ``.voltrisk/run/NAME.pid`` and its output in
``.voltrisk/logs/NAME.log``. Stopping signals exactly that PID, after checking
the process still is the one we started (its command line carries the marker),
so a recycled PID is never killed. A supervised service's PID is its supervisor's
(``voltrisk.supervise``, which restarts it after a failure and passes SIGTERM on).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from voltrisk.errors import UserError


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    healthy: Callable[[], bool]
    marker: str  # a string the service's command line contains
    env: dict[str, str] | None = None
    start_timeout_s: float = 60.0
    supervised: bool = True  # restarted after a failure (voltrisk.supervise)

    def command(self, home: Path) -> list[str]:
        if not self.supervised:
            return self.argv
        return [sys.executable, "-m", "voltrisk.supervise", "--name", self.name,
                "--state-file", str(supervisor_file(home, self.name)), "--", *self.argv]


def run_dir(home: Path) -> Path:
    d = home / "run"
    d.mkdir(parents=True, exist_ok=True)
    return d


def log_path(home: Path, name: str) -> Path:
    d = home / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}.log"


def pid_file(home: Path, name: str) -> Path:
    return run_dir(home) / f"{name}.pid"


def supervisor_file(home: Path, name: str) -> Path:
    return run_dir(home) / f"{name}.supervisor.json"


def supervisor_state(home: Path, name: str) -> dict | None:
    """What the supervisor of NAME recorded: restarts, the service's PID, how its last
    run ended; None for a service not run under a supervisor."""
    import json

    try:
        return json.loads(supervisor_file(home, name).read_text())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def running_pid(home: Path, name: str, marker: str) -> int | None:
    """PID of our running service NAME, or None (a stale PID file is removed)."""
    pf = pid_file(home, name)
    if not pf.exists():
        return None
    try:
        pid = int(pf.read_text().strip())
    except ValueError:
        pf.unlink(missing_ok=True)
        return None
    if marker in _cmdline(pid):
        return pid
    pf.unlink(missing_ok=True)
    return None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start(home: Path, svc: Service) -> tuple[int, bool]:
    """Start SVC unless it runs already; wait until healthy. Returns (pid, started_now)."""
    pid = running_pid(home, svc.name, svc.marker)
    if pid is not None:
        return pid, False
    logf = log_path(home, svc.name)
    with open(logf, "ab") as out:
        proc = subprocess.Popen(
            svc.command(home), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, **(svc.env or {})},
        )
    pid_file(home, svc.name).write_text(str(proc.pid))
    supervisor_file(home, svc.name).unlink(missing_ok=True)  # a new supervisor: its own count
    deadline = time.monotonic() + svc.start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file(home, svc.name).unlink(missing_ok=True)
            raise UserError(f"{svc.name} exited during start-up (code {proc.returncode}); see {logf}: {_tail(logf)}")
        if svc.healthy():
            return proc.pid, True
        time.sleep(0.3)
    stop(home, svc.name, svc.marker)
    raise UserError(f"{svc.name} did not become healthy within {svc.start_timeout_s:.0f}s; see {logf}: {_tail(logf)}")


def stop(home: Path, name: str, marker: str, timeout_s: float = 30.0) -> bool:
    """Stop our service NAME (SIGTERM, then SIGKILL after TIMEOUT_S, to its whole
    process group: a supervisor's service too). True if it was running."""
    pid = running_pid(home, name, marker)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and marker in _cmdline(pid):
        _reap(pid)
        time.sleep(0.2)
    if marker in _cmdline(pid):
        try:
            os.killpg(pid, signal.SIGKILL)  # started in a session of its own: its group is its PID
        except ProcessLookupError:
            pass
        time.sleep(0.2)
        _reap(pid)
    pid_file(home, name).unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])
