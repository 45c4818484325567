"""A throwaway PostgreSQL server on a free loopback port, for benchmarks and tests: `initdb` in a
temporary folder, then `postgres` as a child process, stopped (and restarted) by its PID.

PostgreSQL refuses to run as root. Run as root, the cluster is made and run by the `postgres`
user that the Debian package creates (or `nobody`), which then owns the temporary folder.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from aps.bench.local.processes import HOST, free_port

INSTALL = "PostgreSQL is not installed: `apt-get install -y postgresql`"
SUPERUSER = "aps"
# how `stop` shuts the server down: smart waits for clients, fast disconnects them (a clean
# restart), immediate is a crash (recovery from the WAL at the next start)
SHUTDOWN = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


class PostgresMissing(RuntimeError):
    pass


def find_binaries() -> Path:
    """The folder with `initdb` and `postgres`: on the PATH, or Debian's versioned folder
    (its package puts only client programs on the PATH)."""
    for name in ("initdb", "postgres"):
        found = shutil.which(name)
        if found and (Path(found).parent / ("postgres" if name == "initdb" else "initdb")).exists():
            return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                      key=lambda p: int(Path(p).parent.parent.name) if
                      Path(p).parent.parent.name.isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    raise PostgresMissing(INSTALL)


def _run_as() -> pwd.struct_passwd | None:
    """Who runs the server: this user, or, for root, an unprivileged one."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresMissing("PostgreSQL will not run as root and there is no `postgres` or "
                          "`nobody` user to run it as")


class PostgresServer:
    """`settings` are extra server settings (`-c name=value`), e.g. {"fsync": "off"}."""

    def __init__(self, log_path=None, port: int | None = None,
                 settings: dict[str, str] | None = None):
        self.bin = find_binaries()
        self.port = port or free_port()
        self.settings = dict(settings or {})
        self.user = _run_as()
        self.dir = Path(tempfile.mkdtemp(prefix="aps-pg-"))
        self.data = self.dir / "data"
        self.url = self.url_for("postgres")
        self._log_path = log_path
        self._log = None
        self.proc: subprocess.Popen | None = None
        try:
            if self.user is not None:
                os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
            subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
                           check=True, capture_output=True, cwd=self.dir, **self._as_user())
            self.start()
        except subprocess.CalledProcessError as exc:
            self.close()
            raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from None
        except BaseException:
            self.close()
            raise

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def _as_user(self) -> dict:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server on its port and wait until it takes connections."""
        args = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={self.dir}"]
        for name, value in self.settings.items():
            args += ["-c", f"{name}={value}"]
        self._log = open(self._log_path, "a") if self._log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.dir, **self._as_user())
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop("immediate")
                    raise RuntimeError(f"postgres did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self, mode: str = "fast", timeout_s: float = 30.0) -> None:
        """Shut the server down (see SHUTDOWN); the data stays for `start`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(SHUTDOWN[mode])
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a name of ours, not of a client's
        return self.url_for(name)

    def close(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
