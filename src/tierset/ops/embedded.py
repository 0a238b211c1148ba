"""An embedded PostgreSQL for development and tests, from the machine's own binaries.

PostgreSQL refuses to run as root, so when we are root every ``initdb`` and
``pg_ctl`` runs as the ``postgres`` user and the data folder is handed to it.
The server listens on 127.0.0.1 (and a socket in the data folder) only; it is
for a developer's machine and test runs, never for production.

Every local account can reach 127.0.0.1, so no connection is trusted: the
superuser ``postgres`` has a generated password, kept in ``<data dir>/password``
(mode 0600, readable by the owner of the data folder only), and every
connection, TCP or socket, must present it (SCRAM-SHA-256). ``dsn`` carries it.
A cluster made by an earlier version, which trusted every local connection, is
upgraded on its next ``start``: the password is set, ``pg_hba.conf`` switched to
SCRAM and the configuration reloaded; its data is kept. The upgrade is decided
by ``pg_hba.conf`` itself (does any rule still say ``trust``?), so an upgrade
cut short is finished by the next start.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
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


# A `trust` method in a non-comment part of a pg_hba.conf line.
_TRUST = re.compile(r"\btrust\b")


def _write_private(path: Path, text: str) -> None:
    """Writes `text` to a new file that is 0600 from its first byte."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)


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
    def password_file(self) -> Path:
        """The superuser's password (mode 0600)."""
        return self.data_dir / "password"

    @property
    def dsn(self) -> str:
        """Where to connect, with the password (so never log it)."""
        if not self.password_file.exists():
            raise EmbeddedPostgresError(f"no embedded PostgreSQL in {self.data_dir} yet")
        password = self.password_file.read_text().strip()
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/postgres"

    def exists(self) -> bool:
        """Whether the cluster has been created."""
        return (self.pgdata / "PG_VERSION").exists()

    def running_port(self) -> int | None:
        """The port this cluster's server listens on when it is up (whatever port it was
        started with), else None."""
        if not self.is_running():
            return None
        try:
            # postmaster.pid: pid, data folder, start time, port, ... one per line.
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

    def _run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [str(self._bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)

    def _ensure_password_file(self) -> None:
        """Generates the superuser's password unless one is kept already."""
        if not self.password_file.exists():
            # URL-safe characters only: it goes into a DSN and an SQL literal unquoted.
            _write_private(self.password_file, secrets.token_urlsafe(32) + "\n")

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
        if self.exists():
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._ensure_password_file()
        # initdb runs as `postgres` when we are root, so it must be able to read the file;
        # that user owns the cluster anyway.
        self._hand_to_postgres()
        result = self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={self.password_file}",
            "-E",
            "UTF8",
            "--locale=C",
            *([] if self.durable else ["--no-sync"]),
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed:\n{result.stderr.strip()}")
        return True

    def _trusts_connections(self) -> bool:
        """Whether pg_hba.conf still lets anyone in without a password (earlier versions)."""
        rules = (self.pgdata / "pg_hba.conf").read_text()
        return any(_TRUST.search(line.split("#", 1)[0]) for line in rules.splitlines())

    def _require_password(self) -> None:
        """Upgrades a trusting cluster: sets the password, then switches to SCRAM."""
        self._ensure_password_file()
        password = self.password_file.read_text().strip()
        # Still trusted, so psql gets in without one; the password travels on stdin, never
        # on a command line that `ps` shows.
        result = self._run(
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            stdin=(
                "SET password_encryption = 'scram-sha-256';\n"
                f"ALTER ROLE postgres PASSWORD '{password}';\n"
            ),
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"could not set a password on the PostgreSQL in {self.data_dir}:\n"
                f"{result.stderr.strip()}\nDelete {self.data_dir} to start over."
            )
        hba = self.pgdata / "pg_hba.conf"
        lines = hba.read_text().splitlines(keepends=True)
        upgraded = []
        for line in lines:
            rule, hash_sign, comment = line.partition("#")
            upgraded.append(_TRUST.sub("scram-sha-256", rule) + hash_sign + comment)
        # Rewritten in place: the file keeps its owner (`postgres` when we are root).
        hba.write_text("".join(upgraded))
        result = self._run("pg_ctl", "reload", "-D", str(self.pgdata))
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"pg_ctl reload failed:\n{result.stderr.strip()}")

    def is_running(self) -> bool:
        """Whether this cluster's server is up."""
        return self._run("pg_ctl", "status", "-D", str(self.pgdata)).returncode == 0

    def start(self, *, create: bool = True) -> str:
        """Initialises if needed (unless `create` is False: then a missing cluster is an
        error), starts unless running (else takes the port it runs on), upgrades a
        trusting cluster, and returns the DSN."""
        if not self.exists():
            if not create:
                raise EmbeddedPostgresError(f"no embedded PostgreSQL in {self.data_dir}")
            self.initialise()
        running_port = self.running_port()
        if running_port is None:
            self._start_server()
        else:
            # Already up (`make run` started it): its port, whatever this one was told.
            self.port = running_port
        if self._trusts_connections():
            self._require_password()
        return self.dsn

    def _start_server(self) -> None:
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

    def stop(self, mode: str = "fast") -> None:
        """Stops the server (`fast` rolls back open transactions; `immediate` is a crash)."""
        if self.is_running():
            self._run("pg_ctl", "stop", "-w", "-D", str(self.pgdata), "-m", mode)
