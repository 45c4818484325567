"""`aps bench upstream`'s CPU accounting: the kernel's count for a process and its children, and
CPU seconds per request beside requests/s."""
import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from aps.bench import upstream as bench
from aps.bench.local import processes
from aps.bench.local.server import LocalServer

pytestmark = pytest.mark.timeout(120)

BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def test_cpu_seconds_count_a_process_and_the_children_it_started():
    # a parent that sleeps, with a child that burns 0.4 s of CPU and then waits to be stopped
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {BUSY.format(s=0.4) + 'time.sleep(30)'!r}])\n"
        "time.sleep(30)\n")])
    try:
        deadline = time.monotonic() + 20
        while processes.cpu_seconds(parent.pid) < 0.4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert 0.4 <= processes.cpu_seconds(parent.pid) < 5  # the child's 0.4 s and both startups
    finally:
        for child in processes.children(parent.pid):
            os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_throughput_reports_the_servers_cpu_per_request(tmp_path):
    server = LocalServer(f"speed: 50\ntenants:{bench.TENANTS}", log_path=tmp_path / "aps.log")
    try:
        t = bench.Target("aps", server.url + "/v1", "sk-bench", "sim-llama-3-8b", server.proc.pid)
        result = asyncio.run(bench.throughput(t, True, 1.0))
    finally:
        server.stop()
    assert result["errors"] == 0 and result["requests_per_s"] > 0
    assert 0 < result["cpu_s_per_request"] < 0.1  # some work for each, not seconds of it
