"""`voltrisk dashboard`: run the Streamlit workspace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

app = typer.Typer(help="The Streamlit dashboard.\n\nExample: voltrisk dashboard run", no_args_is_help=True)

APP_FILE = Path(__file__).with_name("app.py")


def streamlit_argv(host: str, port: int) -> list[str]:
    """Command line that serves the dashboard; the shipped config turns error
    details and usage statistics off."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_FILE),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.showErrorDetails", "false",
        "--global.developmentMode", "false",
    ]


@app.command("run")
def run() -> None:
    """Serve the dashboard in the foreground on the configured address.

    Example: VOLTRISK_DASHBOARD_PORT=8502 voltrisk dashboard run
    """
    from voltrisk.settings import DashboardSettings

    s = DashboardSettings()
    raise typer.Exit(subprocess.call(streamlit_argv(s.dashboard_host, s.dashboard_port), env=os.environ.copy()))
