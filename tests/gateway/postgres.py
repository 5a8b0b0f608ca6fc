"""A real PostgreSQL server for the gateway tests, found through MODELSHIELD_TEST_POSTGRES_URL.

`.ci/run` installs Debian's postgresql, starts a server on loopback and exports the URL (a SQLAlchemy
URL, `postgresql+psycopg://USER@127.0.0.1:PORT/postgres`), so in CI a server that is down fails the
tests; where the variable is unset they are skipped with the reason.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

VARIABLE = "MODELSHIELD_TEST_POSTGRES_URL"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database on the server (dropped afterwards), as a SQLAlchemy URL."""
    url = os.environ.get(VARIABLE)
    if not url:
        pytest.skip(f"needs a PostgreSQL server: set {VARIABLE} (.ci/run starts one)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = "modelshield_test_" + secrets.token_hex(6)
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        pytest.fail(f"the PostgreSQL server at {VARIABLE} is not answering: {exc}")
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
