"""The embedded PostgreSQL lets in only who holds its generated password.

Every local account can reach 127.0.0.1 and, as root, the socket folder, so the
server must ask for a password; it lives in the data folder, readable by its owner
only. A cluster made by an earlier version (which trusted every local user) is
upgraded on its next start.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import free_port
from tierset.ops.embedded import EmbeddedPostgres, EmbeddedPostgresError, find_binaries

# asyncpg falls back on ~/.pgpass and PGPASSWORD; neither may lend a test the password.
NO_PASSFILE = "/nonexistent/tierset-test-pgpass"
REFUSED = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)


@pytest.fixture(autouse=True)
def _no_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("PGPASSFILE", raising=False)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder the postgres user can traverse (pytest's tmp_path is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="tierset-embedded-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def _connects(**where: object) -> bool:
    connection = await asyncpg.connect(
        user="postgres", database="postgres", passfile=NO_PASSFILE, timeout=10, **where
    )
    await connection.close()
    return True


async def assert_only_the_password_gets_in(cluster: EmbeddedPostgres) -> None:
    """Without the password (TCP or socket) or with a wrong one: refused; with it: in."""
    with pytest.raises(REFUSED):
        await _connects(host="127.0.0.1", port=cluster.port)
    with pytest.raises(REFUSED):
        await _connects(host=str(cluster.data_dir), port=cluster.port)
    with pytest.raises(REFUSED):
        await _connects(host="127.0.0.1", port=cluster.port, password="not-the-password")
    connection = await asyncpg.connect(cluster.dsn, passfile=NO_PASSFILE)
    assert await connection.fetchval("SELECT current_user") == "postgres"
    await connection.close()


def assert_private(path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip()


async def test_a_new_cluster_lets_in_only_who_holds_the_password(own_postgres):
    await assert_only_the_password_gets_in(own_postgres)
    assert_private(own_postgres.password_file)
    assert own_postgres.password_file.read_text().strip() in own_postgres.dsn


def _initdb_as_earlier_versions_did(pgdata: Path) -> None:
    """A cluster trusting every local connection, as EmbeddedPostgres made them before."""
    binaries = find_binaries()
    assert binaries is not None
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    command = [str(binaries / "initdb"), "-D", str(pgdata), "-U", "postgres", "-A", "trust"]
    command += ["-E", "UTF8", "--locale=C", "--no-sync"]
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(pgdata.parent, user.pw_uid, user.pw_gid)
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True)


async def test_a_trusting_cluster_of_an_earlier_version_is_upgraded_on_start(scratch):
    cluster = EmbeddedPostgres(scratch / "postgres", free_port(), durable=False)
    _initdb_as_earlier_versions_did(cluster.pgdata)
    try:
        cluster.start()
        await assert_only_the_password_gets_in(cluster)
        assert_private(cluster.password_file)
        # A second start finds it upgraded and keeps the same password.
        password = cluster.password_file.read_text()
        cluster.stop()
        cluster.start()
        assert cluster.password_file.read_text() == password
        await assert_only_the_password_gets_in(cluster)
    finally:
        cluster.stop("immediate")


def test_an_existing_cluster_is_never_created_when_asked_not_to(scratch):
    cluster = EmbeddedPostgres(scratch / "postgres", free_port(), durable=False)
    with pytest.raises(EmbeddedPostgresError, match="no embedded PostgreSQL"):
        cluster.start(create=False)
    assert not (scratch / "postgres").exists()
