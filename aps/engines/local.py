"""Start and stop real upstream engines (vLLM, the LiteLLM proxy) on 127.0.0.1.

Tests and benchmarks compare APS with real engines, not only the simulator. The engines live in
their own environments under `.engines/` at the repository root (made by
`scripts/engines/setup_vllm.sh` and `setup_litellm.sh`), so this module needs only the standard
library and httpx, and imports fine when they are not installed: callers ask `vllm_available()`
first and skip when it says None.

Every process is started in its own process group and stopped by its own id, never by name.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from string import Template
from typing import IO, Mapping, Sequence

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
ENGINES_DIR = REPO_ROOT / ".engines"
VLLM_PYTHON = ENGINES_DIR / "vllm" / "bin" / "python"
LITELLM_BIN = ENGINES_DIR / "litellm" / "bin" / "litellm"
TINY_MODEL_DIR = ENGINES_DIR / "tiny-llama"
LITELLM_TEMPLATE = REPO_ROOT / "scripts" / "engines" / "litellm.yaml.template"
HOST = "127.0.0.1"


class EngineStartError(RuntimeError):
    """The process exited, or did not become healthy in time; the message has its log's tail."""


def _executable(path: Path) -> str | None:
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def vllm_available() -> str | None:
    """The Python of the vLLM environment, or None when setup_vllm.sh has not been run."""
    return _executable(VLLM_PYTHON)


def litellm_available() -> str | None:
    """The `litellm` command of the LiteLLM environment, or None when it is not installed."""
    return _executable(LITELLM_BIN)


def tiny_model_available() -> str | None:
    """The tiny model directory built by setup_vllm.sh, or None when it is missing."""
    ok = (TINY_MODEL_DIR / "config.json").is_file() and (TINY_MODEL_DIR / "tokenizer.json").is_file()
    return str(TINY_MODEL_DIR) if ok else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it; a race is possible, rarely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _log_tail(path: Path, n_bytes: int = 4000) -> str:
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
                    f"{self.log_path}:\n{_log_tail(self.log_path)}"
                )
            if self.healthy():
                return
            if time.monotonic() > deadline:
                raise EngineStartError(
                    f"{self.name} not healthy at {self.health_url} after {timeout:.0f} s; log "
                    f"{self.log_path}:\n{_log_tail(self.log_path)}"
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


def _engine_env(venv_bin: Path, extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "DATABASE_URL"):
        env.pop(key, None)
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def start_vllm(
    port: int,
    model_dir: str | os.PathLike[str] | None,
    served_name: str,
    log_path: str | os.PathLike[str],
    max_num_seqs: int | None = None,
    priority: bool = False,
    *,
    kv_cache_gib: int = 1,
    max_model_len: int = 512,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 240.0,
    cpus: str | None = None,
) -> LocalProcess:
    """Start vLLM's OpenAI-compatible server on 127.0.0.1:`port` and wait until it is healthy.

    `cpus` (e.g. "1") pins vLLM's processes to those cores with `taskset`: on a small machine
    its busy engine loop would otherwise take CPU from whatever is measured beside it.

    float32 is about twice as fast as bf16 on AVX2 processors; eager mode starts in about 40 s
    instead of 65-100 s compiled. `priority=True` makes vLLM honour the request field `priority`
    (lower is served first). `model_dir` None means the tiny model from setup_vllm.sh.
    """
    python = vllm_available()
    if python is None:
        raise EngineStartError("vLLM is not installed: run scripts/engines/setup_vllm.sh")
    model = str(model_dir) if model_dir is not None else tiny_model_available()
    if model is None:
        raise EngineStartError("the tiny model is missing: run scripts/engines/setup_vllm.sh")
    argv = [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model,
        "--served-model-name", served_name,
        "--host", HOST,
        "--port", str(port),
        "--max-model-len", str(max_model_len),
        "--dtype", "float32",
        "--enforce-eager",
        "--disable-uvicorn-access-log",  # one log line per request would flood the log
    ]
    if max_num_seqs is not None:
        argv += ["--max-num-seqs", str(max_num_seqs)]
    if priority:
        argv += ["--scheduling-policy", "priority"]
    argv += list(extra_args)
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    env = _engine_env(Path(python).parent, {
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    })
    proc = LocalProcess(
        argv, f"http://{HOST}:{port}/health", log_path,
        env=env, cwd=REPO_ROOT, startup_timeout=startup_timeout, name=f"vllm:{port}",
        base_url=f"http://{HOST}:{port}/v1",
    )
    return proc.start()


def litellm_config(upstream_base_url: str, served_name: str) -> str:
    """The proxy's YAML config: one model, `served_name`, forwarded to the upstream."""
    lines = LITELLM_TEMPLATE.read_text().splitlines(keepends=True)
    template = Template("".join(line for line in lines if not line.startswith("#")))
    return template.substitute(SERVED_NAME=served_name, UPSTREAM_BASE_URL=upstream_base_url)


def start_litellm(
    port: int,
    upstream_base_url: str,
    served_name: str,
    log_path: str | os.PathLike[str],
    *,
    startup_timeout: float = 120.0,
) -> LocalProcess:
    """Start the LiteLLM proxy on 127.0.0.1:`port` in front of `upstream_base_url` (which ends
    in /v1) and wait until it is alive. No database, no telemetry, no remote cost map; its
    config is written beside the log."""
    litellm = litellm_available()
    if litellm is None:
        raise EngineStartError("LiteLLM is not installed: run scripts/engines/setup_litellm.sh")
    log_path = Path(log_path)
    config_path = log_path.with_name(f"{log_path.stem}.litellm.yaml")
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(litellm_config(upstream_base_url, served_name))
    argv = [
        litellm, "--config", str(config_path),
        "--host", HOST, "--port", str(port),
        "--telemetry", "False",
        "--num_workers", "1",
    ]
    env = _engine_env(Path(litellm).parent, {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
        "DO_NOT_TRACK": "1",
    })
    proc = LocalProcess(
        argv, f"http://{HOST}:{port}/health/liveliness", log_path,
        env=env, cwd=log_path.parent, startup_timeout=startup_timeout, name=f"litellm:{port}",
        base_url=f"http://{HOST}:{port}/v1",
    )
    return proc.start()
