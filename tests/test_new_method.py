"""A new method is one file: a two-peer deep mutual learning method (Zhang et al. 2018:
each peer's CE plus KL to the other's softmax, one joint step) registered here, then run
through `fit` and through the CLI with nothing else added."""
import json
from dataclasses import dataclass

import pytest
import torch.nn.functional as F

from gkd_ext.train import (DataConfig, ModelSpec, OptimConfig, Role, Slot, build_tasks, fit,
                           make_method, option, register_method)
from gkd_ext.train.method import Method


# ---- the method: everything a new method needs ------------------------------------------
@dataclass
class DMLConfig:
    weight: float = option(1.0, help="weight of the KL term", min=0.0)


@register_method
class TwoPeerDML(Method):
    name = "test-dml"
    summary = "two peers, each CE + KL to the other's (detached) softmax"
    Config = DMLConfig
    models = {"peer": ModelSpec("gcn", hidden=16)}
    roles = {"peer": Role.PEER}

    def participants(self):
        return {f"peer{i}": Slot(Role.PEER, self.specs["peer"]) for i in range(2)}

    def setup(self, ctx):
        self.task = ctx.task
        return {}

    def step(self, out, batch, learners):
        losses = {}
        for me, other in (("peer0", "peer1"), ("peer1", "peer0")):
            target = F.softmax(out[other].logits.detach(), -1)
            kl = F.kl_div(F.log_softmax(out[me].logits, -1), target, reduction="batchmean")
            losses[me] = self.task.loss(out[me].logits, batch) + self.config.weight * kl
        return losses, {}
# ---- end of the method ------------------------------------------------------------------


def test_the_method_runs_through_fit():
    (_, task), = build_tasks(DataConfig("cora"), seed=0)
    rec = fit(make_method("test-dml"), task, OptimConfig(epochs=3), progress=False).record
    assert set(rec["slots"]) == {"peer0", "peer1"}
    assert all(len(s["history"]) == 3 for s in rec["slots"].values())
    assert rec["result"]["test"] > 0.3


def test_the_method_runs_through_the_cli(tmp_path, capsys):
    from gkd_ext.train.cli import main
    with pytest.raises(SystemExit):
        main(["--method", "test-dml", "--help"])
    help_text = capsys.readouterr().out
    assert "--weight" in help_text and "--peer-hidden" in help_text
    out = tmp_path / "dml.json"
    main(["--method", "test-dml", "--weight", "0.5", "--peer", "sage", "--epochs", "2",
          "--no-progress", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["config"]["config"] == {"weight": 0.5}
    assert res["runs"][0]["slots"]["peer1"]["spec"]["arch"] == "sage"


def test_the_method_definition_is_short():
    lines = open(__file__).read().split("# ---- the method")[1].split("# ---- end of the method")[0]
    assert len(lines.strip().splitlines()) < 60
