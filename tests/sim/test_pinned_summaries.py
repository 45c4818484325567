"""Shipped scenarios give the summaries they gave before: figures pinned from `aps simulate`.

A change to the layout or to how the simulator is driven must not move these. (`aging` is
the policy that was called `aps` when they were pinned: the seeds' pure aging.) A change that
means to move them (a policy's rule, the performance model) updates them in the same commit and
says why.
"""
import json

import pytest
from typer.testing import CliRunner

from aps.cli import app

PINNED = [
    ("noisy-neighbour --policy fifo --gpu a10g --requests 1200",
     {"finished": 1200, "rejected": 0, "iterations": 6342, "preemptions": 438,
      "simulated_s": 551.4164885007124, "throughput_tokens_per_s": 1665.8624091883921,
      "jain_fairness": 0.7575725302063128, "ttft_s.p50": 155.0580073241887,
      "ttft_s.p99": 345.8855245386612, "tpot_s.p50": 0.09853758376828288,
      "mean_batch_size": 48.3561967833491, "per_tenant.noisy.ttft_s.p99": 350.89821900195136}),
    ("noisy-neighbour --policy vtc --gpu a10g --requests 1200",
     {"finished": 1200, "rejected": 0, "iterations": 6295, "preemptions": 692,
      "simulated_s": 524.2968316905034, "throughput_tokens_per_s": 1752.0304233733143,
      "jain_fairness": 0.9913107306786154, "ttft_s.p50": 118.40680894610873,
      "ttft_s.p99": 320.4953817024513, "tpot_s.p50": 0.09507997024803974,
      "mean_batch_size": 48.717235901509135, "per_tenant.noisy.ttft_s.p99": 325.71317996784285}),
    ("seed-tenants --policy aging --gpu seed-a100 --batch micro",
     {"finished": 539, "rejected": 31, "iterations": 6744, "preemptions": 0,
      "simulated_s": 307.9735900588739, "throughput_tokens_per_s": 480.29118331777534,
      "jain_fairness": 0.40257505000769406, "ttft_s.p50": 135.97886872284795,
      "ttft_s.p99": 244.3445721062555, "tpot_s.p50": 0.04244475985935571,
      "mean_batch_size": 11.87826215895611, "per_tenant.tenant_a.ttft_s.p99": 20.21913979308986}),
    ("vtc-lmsys --policy aging --step",
     {"finished": 1500, "rejected": 0, "iterations": 12230, "preemptions": 1227,
      "simulated_s": 665.7412402903466, "throughput_tokens_per_s": 884.2699901590222,
      "jain_fairness": 0.9022967517180915, "ttft_s.p50": 3.80203603748555,
      "ttft_s.p99": 45.45902120674552, "tpot_s.p50": 0.06250470084241866,
      "mean_batch_size": 31.422485690923956, "per_tenant.tenant-0.ttft_s.p99": 35.83306238192299}),
    ("autoscale-azure-code --policy vtc --requests 3000",
     {"finished": 3000, "rejected": 0, "iterations": 43614, "preemptions": 22,
      "simulated_s": 1091.5409037046484, "throughput_tokens_per_s": 5590.934777879192,
      "jain_fairness": 0.9999906762502705, "ttft_s.p50": 0.1779307395009937,
      "ttft_s.p99": 4.044039139423246, "tpot_s.p50": 0.019534172888659038,
      "mean_batch_size": 1.9496491952125465, "per_tenant.team-1.ttft_s.p99": 4.546592658565564,
      "autoscale.replica_seconds": 6002.327229637187, "autoscale.scale_ups": 6}),
    # the autoscaler judges SLO attainment by the run's SLO when its block sets none
    ("autoscale-azure-code --policy vtc --requests 3000 --slo-ttft 0.5 --slo-tpot 0.05",
     {"finished": 3000, "iterations": 56855, "preemptions": 8,
      "simulated_s": 1091.5409037046484, "throughput_tokens_per_s": 5590.934777879192,
      "jain_fairness": 0.9999988690092066, "mean_batch_size": 1.4944683844868525,
      "slo_attainment": 0.805, "ttft_s.p50": 0.13311087513875464,
      "ttft_s.p99": 1.6953880541005186, "tpot_s.p50": 0.015496254569837577,
      "per_tenant.team-1.ttft_s.p99": 1.7557024398489007,
      "autoscale.replica_seconds": 8572.327229637187, "autoscale.scale_ups": 2}),
]


def _get(summary: dict, dotted: str):
    value = summary
    for part in dotted.split("."):
        value = value[part]
    return value


@pytest.mark.parametrize("args, pinned", PINNED, ids=[a for a, _ in PINNED])
def test_shipped_scenario_summary_is_unchanged(args, pinned, tmp_path):
    out = tmp_path / "summary.json"
    result = CliRunner().invoke(app, ["simulate", *args.split(), "--json", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    for key, expected in pinned.items():
        assert _get(summary, key) == pytest.approx(expected, rel=1e-9), key
