"""Who may see the dashboard.

Modes (``VOLTRISK_DASHBOARD_AUTH``):

- ``auto`` (default): OIDC sign-in when ``.streamlit/secrets.toml`` has an ``[auth]``
  section, otherwise open — the local default binds 127.0.0.1 only.
- ``oidc``: ``st.login`` against the ``[auth]`` provider; refuse to serve without one.
- ``proxy``: a reverse proxy authenticates and passes the user in a header
  (``VOLTRISK_DASHBOARD_PROXY_USER_HEADER``, default ``X-Forwarded-User``); requests
  without it are refused. The proxy must drop that header from client requests and
  the dashboard must only be reachable through the proxy.
"""

from __future__ import annotations

from typing import Literal

import streamlit as st
from pydantic_settings import BaseSettings, SettingsConfigDict


class AccessSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOLTRISK_DASHBOARD_", extra="forbid", frozen=True, hide_input_in_errors=True)

    auth: Literal["auto", "oidc", "proxy", "none"] = "auto"
    proxy_user_header: str = "X-Forwarded-User"


_USER_KEY = "voltrisk_user"


def _oidc_configured() -> bool:
    return st.secrets.load_if_toml_exists() and "auth" in st.secrets


def current_user() -> str | None:
    """The signed-in user's name, or None when the dashboard runs without sign-in."""
    return st.session_state.get(_USER_KEY)


def require_login() -> str | None:
    """Stop the script unless the visitor may see the dashboard; remember and return the user's name when known."""
    user = _check()
    st.session_state[_USER_KEY] = user
    return user


def _check() -> str | None:
    s = AccessSettings()
    mode = s.auth
    if mode == "auto":
        mode = "oidc" if _oidc_configured() else "none"
    if mode == "none":
        return None
    if mode == "proxy":
        user = st.context.headers.get(s.proxy_user_header)
        if not user:
            st.error(f"Sign in through the organisation's proxy: this request carries no {s.proxy_user_header} header.")
            st.stop()
        st.sidebar.caption(f"Signed in as {user}")
        return user
    if not _oidc_configured():
        st.error("VOLTRISK_DASHBOARD_AUTH=oidc needs an [auth] section in .streamlit/secrets.toml (see docs/dashboard.md).")
        st.stop()
    if not st.user.get("is_logged_in", False):  # absent until the auth provider has answered once
        st.title("voltrisk")
        st.button("Sign in", on_click=st.login, type="primary")
        st.stop()
    user = st.user.get("email") or st.user.get("name") or "signed-in user"
    st.sidebar.caption(f"Signed in as {user}")
    st.sidebar.button("Sign out", on_click=st.logout)
    return user
