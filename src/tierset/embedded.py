"""An embedded PostgreSQL for development and tests, from the machine's own binaries.

PostgreSQL refuses to run as root, so when we are root every ``initdb`` and
``pg_ctl`` runs as the ``postgres`` user and the data folder is handed to it.
The server listens on 127.0.0.1 only and trusts local connections: this is
for a developer's machine and test runs, never for production.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

HOW_TO_GET_POSTGRES = (
    "No PostgreSQL binaries were found and DATABASE_URL is not set.\n"
    "Either install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`; the binaries\n"
    "land in /usr/lib/postgresql/<version>/bin), or point tierset at a running server:\n"
    "  DATABASE_URL=postgresql://user:password@host:5432/dbname make run"
)


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be set up or started."""


def find_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: the newest Debian layout, else PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    for folder in reversed(candidates):
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


class EmbeddedPostgres:
    """One PostgreSQL server in `data_dir`, on 127.0.0.1:`port`."""

    def __init__(self, data_dir: Path, port: int, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.durable = durable
        binaries = find_binaries()
        if binaries is None:
            raise EmbeddedPostgresError(HOW_TO_GET_POSTGRES)
        self._bin = binaries
        self._as_postgres = os.geteuid() == 0

    @property
    def pgdata(self) -> Path:
        """The cluster's own folder."""
        return self.data_dir / "pgdata"

    @property
    def dsn(self) -> str:
        """Where to connect."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self._bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    def _hand_to_postgres(self) -> None:
        if not self._as_postgres:
            return
        user = pwd.getpwnam("postgres")
        for folder in (self.data_dir, *self.data_dir.rglob("*")):
            os.chown(folder, user.pw_uid, user.pw_gid)
        probe = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-w", str(self.data_dir)], check=False
        )
        if probe.returncode != 0:
            raise EmbeddedPostgresError(
                f"the postgres user cannot reach {self.data_dir}; put the data folder "
                "somewhere it can traverse (set TIERSET_DATA_DIR), or set DATABASE_URL"
            )

    def initialise(self) -> bool:
        """Creates the cluster unless it exists; returns whether it created one."""
        if (self.pgdata / "PG_VERSION").exists():
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._hand_to_postgres()
        result = self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            *([] if self.durable else ["--no-sync"]),
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed:\n{result.stderr.strip()}")
        return True

    def is_running(self) -> bool:
        """Whether this cluster's server is up."""
        return self._run("pg_ctl", "status", "-D", str(self.pgdata)).returncode == 0

    def start(self) -> str:
        """Initialises if needed, starts unless running, and returns the DSN."""
        self.initialise()
        if self.is_running():
            return self.dsn
        options = [
            f"-p {self.port}",
            f"-k {self.data_dir}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        result = self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.data_dir / "postgres.log"),
            "-o",
            " ".join(options),
        )
        if result.returncode != 0:
            log_tail = ""
            log_file = self.data_dir / "postgres.log"
            if log_file.exists():
                log_tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
            raise EmbeddedPostgresError(
                f"PostgreSQL did not start on port {self.port}:\n"
                f"{result.stderr.strip()}\n{log_tail}"
            )
        return self.dsn

    def stop(self, mode: str = "fast") -> None:
        """Stops the server (`fast` rolls back open transactions; `immediate` is a crash)."""
        if self.is_running():
            self._run("pg_ctl", "stop", "-w", "-D", str(self.pgdata), "-m", mode)
