"""`aps bench policy`: the default policy's three outcomes hold on the simulated GPUs (the runs
are deterministic, so this is behaviour, not timing)."""
from typer.testing import CliRunner

from aps.bench import policy
from aps.cli import app


def test_the_three_outcomes_hold_and_the_report_says_so():
    result = policy.run()
    burst = result["burst"]
    assert burst["priority_wait_grows"] and burst["holds"]
    for row in burst["runs"]:
        for alpha, v in row["aps"].items():
            assert row["fifo_wait_s"] <= v["wait_s"] <= v["bound_s"] < row["priority_wait_s"]
    assert result["noisy"]["holds"] and result["noisy"]["light_p90_s"]["fifo"] > \
        10 * result["noisy"]["light_p90_s"]["aps"]
    lmsys = result["lmsys"]
    assert lmsys["holds"] and all(r["overload"] > 1.05 for r in lmsys["runs"])
    lines = policy.report(result)
    assert sum("DOES NOT HOLD" in line for line in lines) == 0
    assert sum(line.endswith("holds") for line in lines) == 3


def test_the_command_prints_the_outcomes():
    out = CliRunner().invoke(app, ["bench", "policy"])
    assert out.exit_code == 0, out.output
    assert out.output.count("holds") >= 3 and "vtc-lmsys" in out.output
