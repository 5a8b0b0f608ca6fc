"""The gateway on a real PostgreSQL server: managed migrations, two processes sharing one database and
one store, and a database that goes away (the gateway answers an error and serves nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy

from modelshield.gateway.db import MIGRATIONS, Database, SchemaTooNew, migrate, schema_migrations
from tests.gateway.conftest import Gateway, benign_repo, malicious_repo
from tests.gateway.test_gateway import _get, _resolve_gets
from tests.sources.hubserver import HubServer


def _versions(url: str) -> list[int]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return [int(row[0]) for row in conn.execute(sqlalchemy.select(schema_migrations.c.version))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_apply_once_and_refuse_a_newer_schema(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'gw.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    first = Database(url)
    assert _versions(url) == [version for version, _description, _step in MIGRATIONS]
    token = first.add_token("research")
    assert migrate(first.engine) == []  # already current: nothing re-applied, nothing lost
    assert Database(url).team(token) == "research"
    with first.engine.begin() as conn:
        conn.execute(sqlalchemy.insert(schema_migrations).values(version=999, description="future", applied=0))
    with pytest.raises(SchemaTooNew):
        Database(url)
    first.engine.dispose()


def test_a_database_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:  # the first slice's schema: the tables, no schema_migrations
        conn.exec_driver_sql(
            "CREATE TABLE tokens (digest VARCHAR(64) PRIMARY KEY, team VARCHAR(200) NOT NULL, created INTEGER NOT NULL)"
        )
        conn.exec_driver_sql("INSERT INTO tokens VALUES ('" + "0" * 64 + "', 'old', 0)")
    database = Database(url)
    assert _versions(url) == [version for version, _description, _step in MIGRATIONS]
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT team FROM tokens").scalar() == "old"


def test_two_processes_share_one_postgresql(
    hub: HubServer, gateway: Gateway, postgres_url: str, tmp_path: Path
) -> None:
    source = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", source, private=True)
    hub.add_repo("org/evil", malicious_repo(tmp_path / "evil"), private=True)
    gateway.database = postgres_url
    token = gateway.add_token("research")
    first = gateway.start()
    other = Gateway(hub.url, gateway.workdir, database=postgres_url).start()  # same store, same database
    try:
        assert _get(f"{first.url}/org/evil/resolve/main/config.json", token)[0] == 403
        assert _get(f"{first.url}/org/benign/resolve/main/config.json", token)[0] == 200
        fetched = len(_resolve_gets(hub, "org/"))
        status, headers, _body = _get(f"{other.url}/org/evil/resolve/main/config.json", token)
        assert status == 403 and "PKL001" in headers["x-error-message"]
        status, _headers, body = _get(f"{other.url}/org/benign/resolve/main/model.safetensors", token)
        assert status == 200 and body == (source / "model.safetensors").read_bytes()
        assert other.events("scan") == [] and other.events("fetch") == []  # the first process's verdicts
        assert len(_resolve_gets(hub, "org/")) == fetched
        engine = sqlalchemy.create_engine(postgres_url)
        with engine.connect() as conn:
            decisions = conn.exec_driver_sql("SELECT who, decision FROM audit WHERE action = 'serve'").all()
        engine.dispose()
        assert set(decisions) == {("team:research", "block"), ("team:research", "allow")}
    finally:
        other.stop()


def test_postgresql_gone_serves_nothing(hub: HubServer, gateway: Gateway, postgres_url: str, tmp_path: Path) -> None:
    source = benign_repo(tmp_path / "benign")
    hub.add_repo("org/benign", source, private=True)
    gateway.database = postgres_url
    token = gateway.add_token("research")
    gateway.start()
    assert _get(f"{gateway.url}/org/benign/resolve/main/config.json", token)[0] == 200  # judged and cached
    name = sqlalchemy.engine.make_url(postgres_url).database
    admin = sqlalchemy.create_engine(postgres_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")  # its connections are cut
    admin.dispose()
    status, headers, body = _get(f"{gateway.url}/org/benign/resolve/main/model.safetensors", token)
    assert status >= 500 and body != (source / "model.safetensors").read_bytes()
    assert "x-repo-commit" not in headers
    assert _get(f"{gateway.url}/health")[0] == 503
