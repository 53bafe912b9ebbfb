"""Access modes of the entry file (AppTest; the proxy header itself is tested in the browser test)."""

from __future__ import annotations

from dashboard_seed import run_page


def test_proxy_mode_refuses_a_request_without_the_user_header(seeded_url, warehouse_at, monkeypatch):
    warehouse_at(seeded_url)
    monkeypatch.setenv("VOLTRISK_DASHBOARD_AUTH", "proxy")
    at = run_page("app.py")
    assert [e.value for e in at.error] == [
        "Sign in through the organisation's proxy: this request carries no X-Forwarded-User header."]
    assert not at.title and not at.metric  # no page ran


def test_oidc_mode_without_a_provider_refuses_to_serve(seeded_url, warehouse_at, monkeypatch):
    warehouse_at(seeded_url)
    monkeypatch.setenv("VOLTRISK_DASHBOARD_AUTH", "oidc")
    at = run_page("app.py")
    assert at.error[0].value.startswith("VOLTRISK_DASHBOARD_AUTH=oidc needs an [auth] section")
    assert not at.metric


def test_oidc_mode_with_a_provider_asks_to_sign_in(seeded_url, warehouse_at, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from dashboard_seed import REPO

    warehouse_at(seeded_url)
    monkeypatch.setenv("VOLTRISK_DASHBOARD_AUTH", "oidc")
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=30)
    at.secrets["auth"] = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "s" * 32,
                          "client_id": "voltrisk", "client_secret": "x",
                          "server_metadata_url": "https://id.example.org/.well-known/openid-configuration"}
    at.run()
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.metric


def test_open_mode_by_default(seeded_url, warehouse_at):
    warehouse_at(seeded_url)
    at = run_page("app.py")
    assert at.title[0].value == "Pipeline health" and not at.error
