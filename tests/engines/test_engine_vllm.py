"""APS in front of a real vLLM on this machine (the CPU build, a tiny random-weight model).

Marker `engine`: deselected by default; `make test-engine` installs vLLM into `.engines/vllm`
when missing (scripts/engines/setup_vllm.sh) and runs these. Each vLLM takes about 40 s to start.
"""
import asyncio
import threading

import httpx
import openai
import pytest

from aps.bench.local import engines as local
from aps.bench import upstream as bench
from aps.bench.local.processes import free_port
from aps.bench.local.server import LocalServer

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not (local.vllm_available() and local.tiny_model_available()),
                       reason="vLLM is not installed: run scripts/engines/setup_vllm.sh "
                              "(or `make test-engine`)"),
]
SEATS = 16  # vLLM's --max-num-seqs, and the gateway's max_in_flight for it


def start_vllm(tmp_path, name):
    return local.start_vllm(free_port(), None, "tiny", tmp_path / f"{name}.log",
                            max_num_seqs=SEATS, cpus=bench.vllm_cpus())


SCRAPER_KEY = "scraper-key-0123456789"
SCRAPER = {"Authorization": f"Bearer {SCRAPER_KEY}"}


def gateway(tmp_path, vllms, policy="vtc", routing="least-outstanding-tokens"):
    urls = [v.base_url.removesuffix("/v1") for v in vllms]
    extra = (f"routing: {routing}\nretries: 3\nhealth_interval_s: 0.5\n"
             f"metrics_key: {SCRAPER_KEY}\n")
    return LocalServer(bench.gateway_config(urls, "tiny", policy=policy, max_in_flight=SEATS,
                                            extra=extra),
                       log_path=tmp_path / "gateway.log")


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    proc = start_vllm(tmp_path_factory.mktemp("vllm"), "vllm")
    yield proc
    proc.stop()


def test_completions_and_streaming_through_aps(vllm, tmp_path):
    gw = gateway(tmp_path, [vllm])
    try:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-light", max_retries=0, timeout=60)
        out = c.completions.create(model="tiny", prompt="Once upon a time", max_tokens=12,
                                   extra_body={"ignore_eos": True})
        assert out.model == "tiny" and out.choices[0].text
        assert out.usage.completion_tokens == 12 and out.usage.prompt_tokens > 0
        chunks = list(c.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=8, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert chunks[-1].usage.completion_tokens == 8
        # the gateway billed vLLM's own token counts
        summary = httpx.get(gw.url + "/metrics", headers=SCRAPER).text
        assert 'aps:generation_tokens_total{tenant="light"} 20.0' in summary
    finally:
        gw.stop()


def test_a_flooding_tenant_cannot_starve_a_light_one(vllm, tmp_path):
    """The heavy tenant floods 10x the light tenant's requests at once. Straight to vLLM both
    share its FCFS queue; through APS (vtc) the queue is APS's and the light tenant goes first."""
    gw = gateway(tmp_path, [vllm], policy="vtc")
    try:
        direct = bench.Target("direct", vllm.base_url, "none", "tiny")
        through = bench.Target("aps", gw.url + "/v1", "", "tiny")
        alone = bench.fairness(direct, None, "none", flood=False)
        straight = bench.fairness(direct, "none", "none")
        fair = bench.fairness(through, "sk-heavy", "sk-light")
        print(f"\nlight tenant p90 TTFT: {alone['light_ttft_p90_s']:.3f} s alone, "
              f"{straight['light_ttft_p90_s']:.3f} s straight to vLLM under the flood, "
              f"{fair['light_ttft_p90_s']:.3f} s through APS (vtc)")
        assert fair["light_ttft_p90_s"] < straight["light_ttft_p90_s"] / 5
        assert fair["light_ttft_p90_s"] < 0.5
    finally:
        gw.stop()


def test_killing_a_replica_under_load_loses_no_request_that_had_not_started(tmp_path):
    procs = [None, None]

    def start(i):
        procs[i] = start_vllm(tmp_path, f"vllm{i}")
    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(procs), "a vLLM replica did not start"
    gw = gateway(tmp_path, procs, routing="round-robin")
    try:
        async def one(c, i):
            tokens = 0
            try:
                stream = await c.completions.create(model="tiny", prompt=f"Request {i}:",
                                                    max_tokens=48, stream=True,
                                                    extra_body={"ignore_eos": True})
                async for chunk in stream:
                    tokens += bool(chunk.choices and chunk.choices[0].text)
                return tokens, None
            except openai.APIError as exc:
                return tokens, exc

        async def main():
            c = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-light", max_retries=0,
                                   timeout=120)
            tasks = [asyncio.create_task(one(c, i)) for i in range(80)]
            await asyncio.sleep(1.5)
            await asyncio.to_thread(procs[1].kill)  # a crash, mid-load
            return await asyncio.gather(*tasks)
        results = asyncio.run(main())
        failed = [(tokens, exc) for tokens, exc in results if exc is not None]
        # only a request cut off mid-stream may fail; every other one is retried and finishes
        assert all(tokens > 0 for tokens, _ in failed), failed
        assert len(results) - len(failed) >= 80 - SEATS
        text = httpx.get(gw.url + "/metrics").text
        print(f"\n{len(failed)} of 80 cut off mid-stream; retries: "
              f"{[l for l in text.splitlines() if l.startswith('aps:upstream_retries_total')]}")
    finally:
        gw.stop()
        for p in procs:
            p.stop()
