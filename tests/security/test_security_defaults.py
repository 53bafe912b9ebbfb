"""Safe defaults a user would otherwise have to know about: Faust's web server (it
serves tables) is off unless asked for and then bound to 127.0.0.1; Streamlit runs
with error details and usage statistics off; PLAINTEXT stays the local default."""

from __future__ import annotations

import re
import subprocess
import sys

from dashboard.cli import streamlit_argv
from stream.worker import worker_argv
from voltrisk.settings import BrokerSettings, KafkaClientSettings, WorkerSettings


def test_faust_web_server_is_off_by_default_and_binds_localhost_when_on(tmp_path, monkeypatch):
    from stream.agents import make_app

    for var in ("VOLTRISK_WORKER_WEB_ENABLED", "VOLTRISK_WORKER_WEB_PORT"):
        monkeypatch.delenv(var, raising=False)
    off = WorkerSettings(home=tmp_path)
    assert off.worker_web_enabled is False and "--without-web" in worker_argv(off, "info")
    on = WorkerSettings(home=tmp_path, worker_web_enabled=True)
    assert "--without-web" not in worker_argv(on, "info")
    conf = make_app(on, KafkaClientSettings()).conf
    assert (conf.web_enabled, conf.web_bind, conf.web_host) == (True, "127.0.0.1", "127.0.0.1")
    # tested live in test_security_platform: a worker with the web server on listens on 127.0.0.1 only


def test_streamlit_runs_with_error_details_and_usage_statistics_off(tmp_path):
    """Streamlit itself resolves the options `voltrisk dashboard run` / `voltrisk up` pass
    (from an empty directory, so no config file helps)."""
    argv = streamlit_argv("127.0.0.1", 8501)
    options = argv[argv.index("run") + 2:]

    def resolved(opts: list[str]) -> str:
        res = subprocess.run([sys.executable, "-m", "streamlit", "config", "show", *opts], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout

    shown = resolved(options)
    assert re.search(r'^showErrorDetails = "?false"?$', shown, re.M)
    assert re.search(r"^gatherUsageStats = false$", shown, re.M)
    assert re.search(r'^address = "127.0.0.1"$', shown, re.M)
    # the same check on Streamlit's own defaults fails: the options are what turns them off
    assert not re.search(r"^gatherUsageStats = false$", resolved([]), re.M)


def test_plaintext_is_the_local_default(monkeypatch):
    for var in ("VOLTRISK_BROKER_SECURITY", "VOLTRISK_KAFKA_SECURITY_PROTOCOL"):
        monkeypatch.delenv(var, raising=False)
    assert BrokerSettings().broker_security == "plaintext"
    assert KafkaClientSettings().aiokafka_kwargs()["security_protocol"] == "PLAINTEXT"
    assert KafkaClientSettings().faust_credentials() is None


def test_sasl_settings_without_credentials_are_refused_with_a_sentence(tmp_path):
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs VOLTRISK_KAFKA_SASL_USERNAME and VOLTRISK_KAFKA_SASL_PASSWORD"):
        KafkaClientSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="worker")
    with pytest.raises(ValidationError, match="is not a file; `voltrisk security init` writes the local CA"):
        KafkaClientSettings(kafka_ssl_cafile=tmp_path / "missing.pem")


def test_secrets_do_not_print_in_settings_reprs():
    k = KafkaClientSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="worker",
                            kafka_sasl_password="s3cr3t-value")
    assert "s3cr3t-value" not in repr(k) and "s3cr3t-value" not in str(k.model_dump())
    assert "s3cr3t-value" not in repr(k.faust_credentials())


def test_a_settings_error_does_not_print_the_password_it_was_given():
    """A password without its user name is an error; the error (which goes to a log) must
    not quote the settings it was given."""
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        KafkaClientSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_password="AbCdEfGhIjKlMnOpQrStUvWxYz012345")
    assert "needs VOLTRISK_KAFKA_SASL_USERNAME" in str(err.value) and "KlMnOp" not in str(err.value)
