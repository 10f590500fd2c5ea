"""Trainers: every method on the one `fit` loop, checkpoint/resume, graph classification, the
metrics, and the CLI generated from the configs."""
import dataclasses
import json

import pytest
import torch

import gkd_ext
from gkd_ext.data import GraphDataset, undirected_graph
from gkd_ext.data.synthetic import power_law_graph
from gkd_ext.train import (GraphTask, ModelSpec, NodeTask, OptimConfig, Split, fit, make_method,
                           method_names, obtain_teacher, roc_auc)
from gkd_ext.train.common import Interrupted
from gkd_ext.train.methods.alignahead import AlignaheadConfig, layer_pairs
from gkd_ext.train.methods.offline import AuxConfig, GCRDConfig, LSPConfig


def tiny_task(n=60, classes=3, feats=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    g = power_law_graph(n, 6 * n, seed=seed)
    ei = g.edge_index
    g = gkd_ext.Graph.from_edge_index(torch.cat([ei, ei.flip(0)], 1), n)   # symmetric
    y = torch.randint(0, classes, (n,), generator=gen)
    x = torch.randn(n, feats, generator=gen) + torch.nn.functional.one_hot(y, feats).float()
    idx = torch.randperm(n, generator=gen)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][idx[:20]], masks[1][idx[20:35]], masks[2][idx[35:]] = True, True, True
    return NodeTask(x, y, g, Split(*masks), name="tiny")


def tiny_graph_dataset(num_graphs=40, seed=0):
    """Graphs of two classes told apart by their size and density."""
    gen = torch.Generator().manual_seed(seed)
    src, dst, batch, ys, xs, offset = [], [], [], [], [], 0
    for gid in range(num_graphs):
        label = gid % 2
        n = 6 + 4 * label + int(torch.randint(0, 3, (1,), generator=gen))
        for i in range(n):   # a ring, plus chords for class 1
            src.append(offset + i), dst.append(offset + (i + 1) % n)
            if label and i % 2 == 0:
                src.append(offset + i), dst.append(offset + (i + 3) % n)
        batch += [gid] * n
        ys.append(label)
        xs.append(torch.ones(n, 2) + 0.1 * torch.randn(n, 2, generator=gen))
        offset += n
    graph = undirected_graph(torch.tensor(src), torch.tensor(dst), offset)
    return GraphDataset("toy", torch.cat(xs), graph, torch.tensor(batch), torch.tensor(ys))


OPT = OptimConfig(epochs=2, lr=0.01, weight_decay=5e-4, patience=10)
TEACHER = ModelSpec("gat", 8, 2, 2, 0.1)
STUDENT = ModelSpec("gcn", 16, 2, 1, 0.1)


@pytest.fixture(scope="module")
def teacher_model():
    return obtain_teacher(TEACHER, tiny_task(), OPT, progress=False).models["model"]


OFFLINE = ["kd", "fitnet", "at", "lsp", "gsp", "gcrd"]


def test_every_method_is_registered():
    assert set(method_names()) >= {"supervised", "alignahead", *OFFLINE}


@pytest.mark.parametrize("method", ["supervised"] + OFFLINE)
def test_every_offline_method_runs(teacher_model, method):
    models = {"student": STUDENT} if method == "supervised" else {"teacher": TEACHER, "student": STUDENT}
    teachers = {} if method == "supervised" else {"teacher": teacher_model}
    rec = fit(make_method(method, **models), tiny_task(), OPT, teachers=teachers,
              progress=False).record
    student = rec["slots"]["student"]
    assert 0.0 <= student["test"] <= 1.0 and len(student["history"]) == 2
    assert all(torch.isfinite(torch.tensor(h["loss_student"])) for h in student["history"])
    assert rec["result"]["test"] == student["test"] and rec["metric"] == "accuracy"
    assert rec["timings"]["epochs"] == 2 and rec["commit"]
    if method != "supervised":
        assert rec["slots"]["teacher"]["role"] == "teacher"


def test_teacher_is_trained_when_not_given():
    rec = fit(make_method("kd", teacher=TEACHER, student=STUDENT), tiny_task(), OPT,
              teacher_optim=dataclasses.replace(OPT, epochs=3), progress=False).record
    t = rec["slots"]["teacher"]
    assert t["source"] == "trained" and len(t["history"]) == 3
    assert rec["timings"]["teacher_s"] > 0


def test_offline_with_kd_and_layer_pairs(teacher_model):
    m = make_method("lsp", LSPConfig(with_kd=True, layer_pairs=((0, 0),), kernel="laplacian"),
                    teacher=TEACHER, student=STUDENT)
    assert m.beta() == pytest.approx(10.0)
    fit(m, tiny_task(), OPT, teachers={"teacher": teacher_model}, progress=False)
    bad = make_method("fitnet", AuxConfig(layer_pairs=((3, 0),)), teacher=TEACHER, student=STUDENT)
    with pytest.raises(ValueError, match=r"layer pair \(3, 0\) out of range"):
        fit(bad, tiny_task(), OPT, teachers={"teacher": teacher_model}, progress=False)


def test_method_config_errors():
    with pytest.raises(ValueError, match="sigma does not apply to the rbf kernel"):
        make_method("lsp", LSPConfig(kernel="rbf", sigma=3.0))
    with pytest.raises(ValueError, match=r"num_students must be >= 2"):
        make_method("alignahead", AlignaheadConfig(num_students=1))
    with pytest.raises(ValueError, match=r"has no model group\(s\) \['peer'\]"):
        make_method("kd", peer=STUDENT)
    with pytest.raises(TypeError, match="must be a GCRDConfig"):
        make_method("gcrd", LSPConfig())
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        make_method("nope")
    with pytest.raises(ValueError, match=r"OptimConfig.lr must be > 0, got 0"):
        fit(make_method("supervised"), tiny_task(), OptimConfig(lr=0.0))


@pytest.mark.parametrize("pairing", ["one_to_one", "alignahead"])
def test_alignahead_runs(pairing):
    spec = ModelSpec("gat", 8, 3, 2, 0.1)
    rec = fit(make_method("alignahead", AlignaheadConfig(3, pairing), student=spec), tiny_task(),
              OPT, progress=False).record
    assert set(rec["slots"]) == {"student0", "student1", "student2"}
    assert all(s["role"] == "peer" for s in rec["slots"].values())
    indep = fit(make_method("alignahead", AlignaheadConfig(2, pairing, a=0.0), student=spec),
                tiny_task(), OPT, progress=False).record
    assert len(indep["slots"]) == 2


def test_layer_pairs():
    assert layer_pairs(3, "one_to_one") == [(0, 0), (1, 1), (2, 2)]
    # learner layer k imitates the peer's layer (k - 1) mod L
    assert layer_pairs(3, "alignahead") == [(1, 0), (2, 1), (0, 2)]
    with pytest.raises(ValueError, match="unknown pairing"):
        layer_pairs(3, "diagonal")


def _histories(rec):
    return {n: [{k: v for k, v in h.items()} for h in s["history"]] for n, s in rec["slots"].items()
            if "history" in s and s["role"] != "teacher"}


@pytest.mark.parametrize("method,config,spec", [
    ("gcrd", GCRDConfig(), STUDENT),
    ("alignahead", AlignaheadConfig(), ModelSpec("gcn", 8, 3, 1, 0.2))])
def test_checkpoint_resume_matches_uninterrupted(tmp_path, teacher_model, method, config, spec):
    task = tiny_task()
    opt = OptimConfig(epochs=6, lr=0.01, weight_decay=5e-4, patience=100)
    models = {"student": spec} if method == "alignahead" else {"teacher": TEACHER, "student": spec}
    teachers = {} if method == "alignahead" else {"teacher": teacher_model}
    full = fit(make_method(method, config, **models), task, opt, seed=3, teachers=teachers,
               progress=False).record
    ckpt = str(tmp_path / "run.pt")
    with pytest.raises(Interrupted):
        fit(make_method(method, config, **models), task, opt, seed=3, teachers=teachers,
            progress=False, checkpoint=ckpt, interrupt_after=3)
    resumed = fit(make_method(method, config, **models), task, opt, seed=3, teachers=teachers,
                  progress=False, checkpoint=ckpt).record
    assert _histories(resumed) == _histories(full)
    assert resumed["result"] == full["result"]


def test_finished_run_returns_its_record_and_other_settings_are_refused(tmp_path):
    task = tiny_task()
    opt = OptimConfig(epochs=30, lr=0.05, weight_decay=0.0, patience=3)
    ckpt = str(tmp_path / "run.pt")
    first = fit(make_method("supervised", student=STUDENT), task, opt, seed=1, checkpoint=ckpt,
                progress=False)
    assert first.record["timings"]["epochs"] < 30   # it stopped early
    again = fit(make_method("supervised", student=STUDENT), task, opt, seed=1, checkpoint=ckpt,
                progress=False)
    assert _histories(again.record) == _histories(first.record)
    assert again.record["result"] == first.record["result"]
    for a, b in zip(first.models["student"].state_dict().values(),
                    again.models["student"].state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"other settings \(optim.lr: checkpoint 0.05, this run 0.5"):
        fit(make_method("supervised", student=STUDENT), task, dataclasses.replace(opt, lr=0.5),
            seed=1, checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match="seed: checkpoint 1, this run 2"):
        fit(make_method("supervised", student=STUDENT), task, opt, seed=2, checkpoint=ckpt,
            progress=False)


def test_teacher_checkpoint_reused_and_mismatch_rejected(tmp_path):
    task = tiny_task()
    path = str(tmp_path / "teacher.pt")
    t1 = obtain_teacher(TEACHER, task, OPT, source=path, progress=False)
    t2 = obtain_teacher(TEACHER, task, OPT, source=path, progress=False)
    assert t1.record["source"] == "trained" and t2.record["source"] == f"loaded {path}"
    for a, b in zip(t1.models["model"].state_dict().values(), t2.models["model"].state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="was trained as .* but this run needs"):
        obtain_teacher(ModelSpec("gat", 16, 2, 2, 0.1), task, OPT, source=path, progress=False)
    # same architecture, other training split: its labels would leak into the student
    moved = NodeTask(task.x, task.y, task.graph, Split(task.split.val, task.split.train,
                                                        task.split.test), name="tiny")
    with pytest.raises(ValueError, match="was trained as .* but this run needs"):
        obtain_teacher(TEACHER, moved, OPT, source=path, progress=False)


# ------------------------------------------------------------------ graph classification
def test_graph_classification_trains_and_distils():
    data = tiny_graph_dataset()
    ids = torch.arange(data.num_graphs)
    task = GraphTask(data, ids[:24], ids[24:32], ids[32:], batch_size=8)
    opt = OptimConfig(epochs=40, lr=0.01, weight_decay=0.0, patience=40)
    gin = ModelSpec("gin", 16, 2, dropout=0.0)
    rec = fit(make_method("supervised", student=gin), task, opt, progress=False).record
    assert rec["slots"]["student"]["val"] >= 0.75   # size and density separate the classes
    kd = fit(make_method("lsp", teacher=gin, student=ModelSpec("gcn", 8, 2, dropout=0.0)), task,
             OptimConfig(epochs=2), teacher_optim=opt, progress=False).record
    assert kd["task"]["task"] == "GraphTask" and len(kd["slots"]["student"]["history"]) == 2


def test_graph_task_batches_cover_the_training_graphs():
    data = tiny_graph_dataset(12)
    ids = torch.arange(12)
    task = GraphTask(data, ids[:7], ids[7:9], ids[9:], batch_size=3)
    seen = torch.cat([b.target_ids for b in task.train_batches()])
    assert sorted(seen.tolist()) == list(range(7))
    for b in task.train_batches():
        assert b.pool.num_graphs == b.y.numel() and b.x.size(0) == b.graph.num_dst
        torch.testing.assert_close(b.x, data.x[b.node_ids])
    covered = torch.cat([b.target_ids for b in task.eval_batches()])
    assert covered.tolist() == list(range(12))


# ------------------------------------------------------------------ metrics
def test_roc_auc_matches_the_pairwise_definition():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 2, generator=gen).round(decimals=1)   # many ties
    y = torch.randint(0, 2, (200,), generator=gen)
    s = logits[:, 1] - logits[:, 0]
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    assert roc_auc(logits, y) == pytest.approx(float(pairs.mean()))
    assert roc_auc(torch.tensor([[0.0, 1.0], [0.0, 2.0]]), torch.tensor([1, 1])) != \
        roc_auc(torch.tensor([[0.0, 1.0], [0.0, 2.0]]), torch.tensor([1, 1]))   # NaN: one class


def test_roc_auc_task_records_its_metric():
    task = tiny_task(classes=2)
    task.metric = "roc_auc"
    rec = fit(make_method("supervised", student=STUDENT), task, OPT, progress=False).record
    assert rec["metric"] == "roc_auc" and 0.0 <= rec["result"]["test"] <= 1.0


# ------------------------------------------------------------------ CLI
def test_cli_runs_and_writes_results(tmp_path):
    from gkd_ext.train.cli import main
    out = tmp_path / "r.json"
    main(["--method", "gcrd", "--dataset", "cora", "--epochs", "2", "--teacher-epochs", "2",
          "--teacher", "gcn", "--teacher-layers", "2", "--no-progress", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["method"] == "gcrd" and len(res["runs"]) == 1
    run = res["runs"][0]
    assert set(run["slots"]) == {"teacher", "student"} and run["timings"]["epoch_time_ms"] > 0
    assert run["task"]["targets"] == 2485   # Shchur protocol: the largest connected component
    assert "git_commit" in res["versions"]


def test_cli_teacher_recipe_and_no_lcc(tmp_path):
    from gkd_ext.train.cli import main
    out = tmp_path / "r.json"
    main(["--method", "kd", "--dataset", "cora", "--no-lcc", "--epochs", "2", "--teacher-epochs",
          "4", "--teacher-lr", "0.02", "--teacher", "gcn", "--teacher-layers", "2",
          "--no-progress", "--out", str(out)])
    run = json.loads(out.read_text())["runs"][0]
    # the teacher ran its own 4 epochs, the student the 2 of --epochs
    assert len(run["slots"]["teacher"]["history"]) == 4
    assert len(run["slots"]["student"]["history"]) == 2
    assert run["task"]["targets"] == 2708


def test_cli_method_help_lists_its_options(capsys):
    from gkd_ext.train.cli import main
    with pytest.raises(SystemExit):
        main(["--method", "alignahead", "--help"])
    text = capsys.readouterr().out
    assert "--num-students" in text and "--pairing" in text and "--teacher-lr" not in text
    with pytest.raises(SystemExit):
        main(["--method", "gcrd", "--help"])
    text = capsys.readouterr().out
    assert "--proj-dim" in text and "(256)" in text and "--teacher-lr" in text


@pytest.mark.parametrize("argv,message", [
    (["--method", "nonsense"], "invalid choice: 'nonsense'"),
    (["--lr", "0"], "argument --lr: must be > 0, got 0"),
    (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["--method", "gsp", "--beta", "nan"], "argument --beta: must be a finite number"),
    (["--method", "gsp", "--beta", "-1"], "argument --beta: must be >= 0, got -1"),
    (["--method", "kd", "--kd-temperature", "0"], "argument --kd-temperature: must be > 0"),
    (["--method", "kd", "--teacher-lr", "0"], "argument --teacher-lr: must be > 0"),
    (["--method", "gcrd", "--temperature", "0"], "argument --temperature: must be > 0"),
    (["--method", "alignahead", "--a", "-1"], "argument --a: must be >= 0"),
    (["--method", "kd", "--teacher-heads", "-2"], "argument --teacher-heads: must be >= 1"),
    (["--student-dropout", "1.5"], "argument --student-dropout: must be <= 1"),
    (["--runs", "0"], "must be >= 1"),
    (["--lr", "abc"], "expected float"),
])
def test_cli_rejects_bad_values_at_parse_time(argv, message, capsys):
    from gkd_ext.train.cli import main
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--no-progress"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_bad_dataset_and_model_options(capsys, tmp_path):
    from gkd_ext.train.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["--dataset", "no-such-graph", "--epochs", "1", "--no-progress"])
    assert exc.value.code == 2 and "no-such-graph" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--student-options", "residual=true", "--epochs", "1", "--no-progress",
              "--out", str(tmp_path / "x.json")])
    assert exc.value.code == 2 and "gcn takes no option(s) ['residual']" in capsys.readouterr().err


def test_cli_graph_classification(tmp_path):
    from gkd_ext.train.cli import main
    d = tmp_path / "tudataset" / "MUTAG"
    d.mkdir(parents=True)
    data = tiny_graph_dataset(20)
    ei = data.graph.edge_index + 1
    (d / "MUTAG_A.txt").write_text("\n".join(f"{a}, {b}" for a, b in ei.t().tolist()))
    (d / "MUTAG_graph_indicator.txt").write_text("\n".join(str(int(b) + 1) for b in data.batch))
    (d / "MUTAG_graph_labels.txt").write_text("\n".join(str(int(v)) for v in data.y))
    (d / "MUTAG_node_labels.txt").write_text("\n".join("0" for _ in range(data.num_nodes)))
    out = tmp_path / "g.json"
    main(["--dataset", "mutag", "--data-dir", str(tmp_path), "--student", "gin", "--folds", "4",
          "--epochs", "2", "--no-progress", "--out", str(out)])
    res = json.loads(out.read_text())
    assert [r["run"] for r in res["runs"]] == ["fold0", "fold1", "fold2", "fold3"]
    assert res["summary"]["test"]["n"] == 4


def test_cli_tune_records_every_setting(tmp_path):
    from gkd_ext.train.cli import main
    from gkd_ext.train.experiment import tune_candidates
    out = tmp_path / "t.json"
    main(["--dataset", "synthetic-csbm", "--epochs", "2", "--tune", "--no-progress",
          "--out", str(out)])
    run = json.loads(out.read_text())["runs"][0]
    tried = run["tuned"]["tried"]
    assert len(tried) == len(tune_candidates(OptimConfig()))
    assert run["result"]["val"] == max(t["val"] for t in tried)
