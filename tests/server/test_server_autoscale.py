"""The gateway's autoscaling signal against a real server: a backlog raises
`aps:desired_replicas` and logs why; once it has drained the gauge comes back down."""
import asyncio
import re
import time
from pathlib import Path

import httpx
import openai
import pytest

from aps.bench.local.server import LocalServer
from aps.core import ConfigError
from aps.server.config import load_config

# One request at a time, so concurrent requests queue; the signal looks every 50 ms and,
# with no cool-downs, a half-second stabilisation and a one-second SLO window, follows the
# backlog closely.
CONFIG = """
speed: 2
batch: {max_num_seqs: 1}
tenants:
  - {id: acme, keys: [sk-acme]}
autoscale: {min: 1, max: 6, interval_s: 0.05, target_queue: 2, up_cooldown_s: 0,
            down_cooldown_s: 0, stabilization_s: 0.5, max_step_up: 4, max_step_down: 6,
            slo_window_s: 1}
"""


def desired(server) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return float(re.search(r"^aps:desired_replicas (\S+)$", text, re.M).group(1))


def test_a_backlog_raises_the_desired_count_and_a_drained_queue_lowers_it(tmp_path):
    log_path = tmp_path / "server.log"
    server = LocalServer(CONFIG, log_path=log_path)
    try:
        assert desired(server) == 1

        async def load():
            c = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="sk-acme", max_retries=0)
            return await asyncio.gather(*(c.completions.create(model="sim-llama-3-8b", prompt="hello",
                                                               max_tokens=48) for _ in range(10)))

        async def watch(done: asyncio.Event) -> list[float]:
            seen = []
            async with httpx.AsyncClient(timeout=5) as http:
                while not done.is_set():
                    text = (await http.get(server.url + "/metrics")).text
                    seen.append(float(re.search(r"^aps:desired_replicas (\S+)$", text, re.M)[1]))
                    await asyncio.sleep(0.05)
            return seen

        async def main():
            done = asyncio.Event()
            watcher = asyncio.create_task(watch(done))
            outs = await asyncio.wait_for(load(), 60)
            done.set()
            return outs, await watcher

        outs, seen = asyncio.run(main())
        assert [o.usage.completion_tokens for o in outs] == [48] * 10
        assert max(seen) >= 3  # nine waiting behind one seat, two per replica wanted
        deadline = time.monotonic() + 15
        while desired(server) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert desired(server) == 1
    finally:
        assert server.stop() == 0
    lines = [ln for ln in Path(log_path).read_text().splitlines() if "aps.autoscale" in ln]
    # the first change is the backlog's (with clients slowed down, the signal may look while
    # only some of the ten have arrived: 1 -> 4, then 4 -> 5), and a count of 3 or more is
    # logged with the backlog as its reason
    assert re.search(r"desired replicas 1 -> [2-6]: queue depth \d+ > 2 per replica x 1",
                     lines[0]), lines
    assert any(re.search(r"desired replicas [1-5] -> [3-6]: queue depth \d+ > 2 per replica x 1",
                         line) for line in lines), lines
    assert re.search(r"desired replicas \d -> 1: KV usage 0\.\d\d < 0\.50, queue depth 0",
                     lines[-1]), lines


def test_a_bad_autoscale_block_is_refused_with_the_field_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("autoscale: {min: 4, max: 2}\n")
    with pytest.raises(ConfigError, match=r"field 'autoscale.(min|max)': need 1 <= min <= max"):
        load_config(path, env={})
    path.write_text("autoscale: {min: 1, maxx: 2}\n")
    with pytest.raises(ConfigError, match=r"field 'autoscale.maxx': unknown field"):
        load_config(path, env={})
