"""Streamlit helpers shared by the pages: warehouse errors and empty states."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from dashboard.repository import TableMissing, WarehouseUnavailable, tables


@contextmanager
def warehouse_guard() -> Iterator[None]:
    """Turn an unreachable warehouse or a missing table into one clear sentence and stop the page."""
    try:
        yield
    except WarehouseUnavailable as exc:
        st.error(str(exc))
        st.stop()
    except TableMissing as exc:
        st.warning(f"{exc}. Apply the migrations with `voltrisk warehouse migrate`.")
        st.stop()


def require_tables(*names: str, producer: str) -> None:
    """Stop the page with a notice when the tables it reads are not in the warehouse yet."""
    missing = sorted(set(names) - tables())
    if missing:
        st.info(
            f"This page reads {', '.join(missing)}, which this warehouse does not have yet. "
            f"They are created by the migrations and filled by {producer}."
        )
        st.stop()
