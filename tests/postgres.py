"""A throwaway PostgreSQL server for the tests and the benchmark, made from the machine's own packages.

``PostgresServer.start()`` makes a cluster in a temporary folder and runs it on 127.0.0.1 on a free port,
durability off (a test server loses nothing worth keeping). ``initdb`` refuses to run as root, so as root
the cluster belongs to the ``postgres`` user the package creates. With ``TEST_POSTGRES_URL`` set (a server
URL such as postgresql://postgres@127.0.0.1:5432/postgres), that server is used instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg

START_TIMEOUT = 60
INITDB_OPTIONS = ("-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C")


class NoPostgres(RuntimeError):
    """No PostgreSQL server can be started or reached here; the message says what to install or set."""


def _binaries() -> Path:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)  # noqa: S607
        folder = Path(found.stdout.strip())
        if (folder / "initdb").exists():
            return folder
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parent.parent.name), reverse=True
    )
    if versions:
        return versions[0].parent
    raise NoPostgres(
        "No PostgreSQL server programs were found; install the postgresql package (apt-get install postgresql) "
        "or set TEST_POSTGRES_URL to a server the tests may create databases on."
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One PostgreSQL server the tests create their databases on."""

    def __init__(self, server_url: str, *, folder: Path | None = None, control: list[str] | None = None) -> None:
        self.server_url = server_url
        self._folder = folder
        #: The pg_ctl command (run as the cluster's owner) of a server this object started.
        self._control = control

    @classmethod
    def start(cls) -> PostgresServer:
        given = os.environ.get("TEST_POSTGRES_URL")
        if given:
            return cls(given)
        binaries = _binaries()
        folder = Path(tempfile.mkdtemp(prefix="bot-postgres-"))
        prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise NoPostgres("There is no postgres user to run the test server as; install postgresql.") from exc
            os.chown(folder, owner.pw_uid, owner.pw_gid)
            prefix = ["runuser", "-u", "postgres", "--"]
        data = folder / "data"
        try:
            subprocess.run(  # noqa: S603
                [*prefix, str(binaries / "initdb"), "-D", str(data), *INITDB_OPTIONS],
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise NoPostgres(f"initdb failed: {exc.stderr.decode(errors='replace').strip()}") from exc
        port = _free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": str(folder),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
        }
        options = " ".join(f"-c {name}={value}" for name, value in settings.items())
        control = [*prefix, str(binaries / "pg_ctl"), "-D", str(data)]
        server = cls(f"postgresql://postgres@127.0.0.1:{port}/postgres", folder=folder, control=control)
        started = subprocess.run(  # noqa: S603
            [*control, "-l", str(folder / "server.log"), "-w", "-t", str(int(START_TIMEOUT)), "-o", options, "start"],
            capture_output=True,
            check=False,
        )
        if started.returncode != 0:
            said = (
                (folder / "server.log").read_text(errors="replace")[-2000:] if (folder / "server.log").exists() else ""
            )
            server.stop()
            raise NoPostgres(f"The test PostgreSQL server did not start: {said or started.stderr.decode()}")
        return server

    @property
    def port(self) -> int:
        return int(self.server_url.rsplit(":", 1)[1].split("/")[0])

    def url(self, database: str) -> str:
        return self.server_url.rsplit("/", 1)[0] + "/" + database

    async def create_database(self, prefix: str = "test") -> str:
        """A new, empty database; returns its URL."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        connection = await _connect(self.server_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return self.url(name)

    async def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        connection = await _connect(self.server_url)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    def stop(self) -> None:
        if self._control is not None:
            # Fast shutdown: sessions are ended, nothing is waited for.
            subprocess.run([*self._control, "-m", "fast", "-w", "stop"], capture_output=True, check=False)  # noqa: S603
            self._control = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise NoPostgres(f"The test PostgreSQL server at {url} cannot be reached ({exc}).") from exc


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()
