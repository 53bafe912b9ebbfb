"""Restart a local service that stopped with an error, as a process supervisor would.

The worker stops on purpose when it cannot go on safely (a send of derived rows that
Kafka refused: ``stream.agents``), trusting its restart to resume from what Kafka
acknowledged; compose.yaml restarts it (``restart: unless-stopped``) and ``make up``
runs each service under this supervisor:

    python -m voltrisk.supervise --name worker -- python -m voltrisk worker run

- an exit with code 0 ends the supervisor (a service that finished its work);
- a failure in the first ``--settle-s`` seconds of the first run ends it too, with the
  service's code, so a service that cannot start is reported by ``make up`` instead of
  being restarted forever;
- any later failure restarts the service after a back-off (1 s, doubling to 30 s; back
  to 1 s once a run lasted ``--settle-s``);
- SIGTERM / SIGINT are passed to the service, whose exit then ends the supervisor.

The service's command line follows ``--``, so the supervisor's own command line
carries it (``voltrisk.procs`` recognises a service by a marker in it). With
``--state-file`` the supervisor keeps there how often it restarted the service and how
the last run ended, which ``voltrisk status`` shows (a service restarting again and
again is running in name only).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

MAX_BACKOFF_S = 30.0


def say(name: str, text: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor: {name} {text}", flush=True)


def supervise(name: str, argv: list[str], settle_s: float = 30.0, max_backoff_s: float = MAX_BACKOFF_S,
              state_file: str | None = None) -> int:
    stopping: list[int] = []
    child: list[subprocess.Popen] = []
    restarts, last_exit = 0, None

    def record() -> None:
        if state_file is None:
            return
        state = {"restarts": restarts, "child_pid": child[0].pid if child else None, "last_exit": last_exit}
        tmp = f"{state_file}.tmp"
        with open(tmp, "w") as fh:
            json.dump(state, fh)
        os.replace(tmp, state_file)

    def on_signal(signum, _frame) -> None:
        stopping.append(signum)
        if child and child[0].poll() is None:
            child[0].send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    backoff = 1.0
    while True:
        started = time.monotonic()
        child[:] = [subprocess.Popen(argv)]
        if stopping:  # told to stop while the service was being started
            child[0].send_signal(stopping[0])
        record()
        code = child[0].wait()
        ran_s = time.monotonic() - started
        last_exit = {"code": code, "at": time.strftime("%Y-%m-%d %H:%M:%S"), "after_s": round(ran_s, 1)}
        record()
        if stopping or code == 0:
            return code
        if restarts == 0 and ran_s < settle_s:  # the first run
            say(name, f"exited with code {code} {ran_s:.1f} s after its start; not restarted (a start-up failure)")
            return code
        if ran_s >= settle_s:
            backoff = 1.0
        say(name, f"exited with code {code} after {ran_s:.1f} s; restarting it in {backoff:.0f} s")
        deadline = time.monotonic() + backoff
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        if stopping:
            return code
        backoff = min(backoff * 2, max_backoff_s)
        restarts += 1


def main(args: list[str] | None = None) -> int:
    args = sys.argv[1:] if args is None else args
    if "--" not in args:
        raise SystemExit("usage: python -m voltrisk.supervise --name NAME [--settle-s S] [--state-file F] -- COMMAND ...")
    cut = args.index("--")
    p = argparse.ArgumentParser(prog="python -m voltrisk.supervise")
    p.add_argument("--name", required=True)
    p.add_argument("--settle-s", type=float, default=30.0)
    p.add_argument("--state-file")
    opts = p.parse_args(args[:cut])
    if not args[cut + 1:]:
        raise SystemExit("no command after --")
    return supervise(opts.name, args[cut + 1:], opts.settle_s, state_file=opts.state_file)


if __name__ == "__main__":
    sys.exit(main())
