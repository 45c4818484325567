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
from pathlib import Path
from string import Template
from typing import Mapping, Sequence

from aps.bench.local.processes import HOST, EngineStartError, LocalProcess

REPO_ROOT = Path(__file__).resolve().parents[3]  # aps/bench/local/engines.py
ENGINES_DIR = REPO_ROOT / ".engines"
VLLM_PYTHON = ENGINES_DIR / "vllm" / "bin" / "python"
LITELLM_BIN = ENGINES_DIR / "litellm" / "bin" / "litellm"
TINY_MODEL_DIR = ENGINES_DIR / "tiny-llama"
LITELLM_TEMPLATE = REPO_ROOT / "scripts" / "engines" / "litellm.yaml.template"


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
