"""Processes this machine starts for tests and benchmarks, on 127.0.0.1: a free port, and one
process waited on until healthy and stopped by its own id (in its own process group), never by
name."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Mapping, Sequence

import httpx

HOST = "127.0.0.1"


class EngineStartError(RuntimeError):
    """The process exited, or did not become healthy in time; the message has its log's tail."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it; a race is possible, rarely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def log_tail(path: Path, n_bytes: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class LocalProcess:
    """One engine process on this machine: started, waited on until healthy, stopped.

    Use as a context manager (`with LocalProcess(...) as p:`) or call start()/stop(). Output goes
    to `log_path` (appended, so a restarted process keeps its predecessor's log). The process
    gets its own process group, so a Ctrl-C of the caller does not reach it and stop()/kill()
    can also reach the workers it spawned, and nothing else.
    """

    def __init__(
        self,
        argv: Sequence[str],
        health_url: str,
        log_path: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = 240.0,
        name: str | None = None,
        base_url: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.health_url = health_url
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.name = name or Path(self.argv[0]).name
        self.base_url = base_url  # the OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None  # seconds from spawn to the first healthy answer
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def start(self) -> LocalProcess:
        """Spawn the process and wait until its health URL answers 200. Raises EngineStartError
        (after stopping it) when it exits or stays unhealthy past startup_timeout."""
        if self.proc is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        try:
            self.wait_healthy(self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def healthy(self, timeout: float = 2.0) -> bool:
        """True when the health URL answers 200 now."""
        try:
            return httpx.get(self.health_url, timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float) -> None:
        """Poll the health URL until 200; fail early when the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                code = self.returncode
                raise EngineStartError(
                    f"{self.name} exited with status {code} while starting; log "
                    f"{self.log_path}:\n{log_tail(self.log_path)}"
                )
            if self.healthy():
                return
            if time.monotonic() > deadline:
                raise EngineStartError(
                    f"{self.name} not healthy at {self.health_url} after {timeout:.0f} s; log "
                    f"{self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.25)

    def _signal_group(self, sig: int) -> None:
        # The group was made for this process (start_new_session), so its id is our child's pid
        # and it holds only our child and what our child spawned.
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _exited(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the process to exit, without reaping it: while it is an
        unreaped zombie its pid, hence its group's id, cannot be given to another process."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.returncode is not None:
                return True
            try:
                info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            except ChildProcessError:
                return True
            if info is not None and info.si_pid == self.proc.pid:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM to the process (vLLM's API server then stops its own workers); SIGKILL to its
        group after `grace` seconds, or right away for leftovers. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._exited(grace)
        self._signal_group(signal.SIGKILL)  # what is left of this group after the grace period
        code = self.proc.wait()
        self._close_log()
        return code

    def kill(self) -> int | None:
        """SIGKILL the process and its workers at once, as when a replica crashes."""
        if self.proc is None:
            return None
        self._signal_group(signal.SIGKILL)
        code = self.proc.wait()
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}" if self.proc else "new"
        return f"<LocalProcess {self.name} pid={self.pid} {state}>"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and of its children (alive, or ended and waited
    for), from /proc: the kernel's own accounting."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # it ended meanwhile
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The processes `pid` started, and theirs, that are alive."""
    found, todo = [], [pid]
    while todo:
        try:
            tasks = list(Path(f"/proc/{todo.pop()}/task").iterdir())
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue
            found += kids
            todo += kids
    return found


def cpu_wait_s(pid: int | None) -> float:
    """Seconds the threads of `pid` and its descendants have been ready to run but waiting for a
    core (the kernel's schedstat run_delay), NaN where the kernel does not say. Read before and
    after a run, it shows how much the upstream was held back by other work on its cores (on a
    shared machine, the same run can be 10-20% slower for that alone)."""
    if pid is None or not os.path.exists(f"/proc/{pid}/schedstat"):
        return float("nan")
    parent = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent[int(p)] = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
    tree, more, total = set(), {pid}, 0
    while more:  # the process, its children, theirs, ...
        tree |= more
        more = {p for p, pp in parent.items() if pp in tree} - tree
    for p in tree:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for tid in os.listdir(f"/proc/{p}/task"):
                total += int(Path(f"/proc/{p}/task/{tid}/schedstat").read_text().split()[1])
    return total / 1e9
