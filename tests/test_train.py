"""Trainers: a 2-epoch smoke run of every method, checkpoint/resume, the CLI and its errors."""
import json

import pytest
import torch

import gkd_ext
from gkd_ext.data.synthetic import power_law_graph
from gkd_ext.train.alignahead import AlignaheadConfig, layer_pairs, train_alignahead
from gkd_ext.train.common import Interrupted
from gkd_ext.train.offline import (METHODS, KDConfig, ModelSpec, OptimConfig, Split, Task,
                                   get_teacher, train_student)


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
    return Task(x, y, g, Split(*masks))


OPT = OptimConfig(epochs=2, lr=0.01, weight_decay=5e-4, patience=10)
TEACHER = ModelSpec("gat", 8, 2, 2, 0.1)
STUDENT = ModelSpec("gcn", 16, 2, 1, 0.1)


@pytest.fixture(scope="module")
def teacher_pair():
    task = tiny_task()
    teacher, res = get_teacher(task, TEACHER, OPT, progress=False)
    return task, teacher


@pytest.mark.parametrize("method", METHODS)
def test_every_offline_method_runs(teacher_pair, method):
    task, teacher = teacher_pair
    res = train_student(task, teacher, TEACHER, STUDENT, OPT, KDConfig(method), progress=False)
    assert 0.0 <= res["test"] <= 1.0 and len(res["history"]) == 2
    assert all(torch.isfinite(torch.tensor(h["loss_total"])) for h in res["history"])


def test_offline_with_kd_and_layer_pairs(teacher_pair):
    task, teacher = teacher_pair
    cfg = KDConfig("lsp", with_kd=True, layer_pairs=((0, 0),), lsp_kernel="laplacian")
    res = train_student(task, teacher, TEACHER, STUDENT, OPT, cfg, progress=False)
    assert res["beta"] == pytest.approx(10.0)
    with pytest.raises(ValueError, match="layer pair \\(3, 0\\) out of range"):
        train_student(task, teacher, TEACHER, STUDENT, OPT, KDConfig("fitnet", layer_pairs=((3, 0),)),
                      progress=False)


@pytest.mark.parametrize("pairing", ["one_to_one", "alignahead"])
def test_alignahead_runs(pairing):
    task = tiny_task()
    spec = ModelSpec("gat", 8, 3, 2, 0.1)
    res = train_alignahead(task, spec, OPT, AlignaheadConfig(3, pairing), progress=False)
    assert set(res["students"]) == {"student0", "student1", "student2"}
    indep = train_alignahead(task, spec, OPT, AlignaheadConfig(2, pairing, a=0.0), progress=False)
    assert len(indep["students"]) == 2


def test_layer_pairs():
    assert layer_pairs(3, "one_to_one") == [(0, 0), (1, 1), (2, 2)]
    # learner layer k imitates the peer's layer (k - 1) mod L
    assert layer_pairs(3, "alignahead") == [(1, 0), (2, 1), (0, 2)]
    with pytest.raises(ValueError, match="unknown pairing"):
        layer_pairs(3, "diagonal")


def test_checkpoint_resume_matches_uninterrupted(tmp_path, teacher_pair):
    task, teacher = teacher_pair
    opt = OptimConfig(epochs=6, lr=0.01, weight_decay=5e-4, patience=100)
    cfg = KDConfig("gcrd")
    full = train_student(task, teacher, TEACHER, STUDENT, opt, cfg, seed=3, progress=False)
    ckpt = str(tmp_path / "run.pt")
    with pytest.raises(Interrupted):
        train_student(task, teacher, TEACHER, STUDENT, opt, cfg, seed=3, progress=False,
                      checkpoint=ckpt, interrupt_after=3)
    resumed = train_student(task, teacher, TEACHER, STUDENT, opt, cfg, seed=3, progress=False,
                            checkpoint=ckpt)
    assert [h["loss_total"] for h in resumed["history"]] == [h["loss_total"] for h in full["history"]]
    assert resumed["test"] == full["test"] and resumed["best_epoch"] == full["best_epoch"]


def test_alignahead_resume(tmp_path):
    task = tiny_task()
    spec = ModelSpec("gcn", 8, 3, 1, 0.2)
    opt = OptimConfig(epochs=5, lr=0.01, weight_decay=0.0, patience=100)
    full = train_alignahead(task, spec, opt, AlignaheadConfig(), seed=1, progress=False)
    ckpt = str(tmp_path / "a.pt")
    with pytest.raises(Interrupted):
        train_alignahead(task, spec, opt, AlignaheadConfig(), seed=1, progress=False,
                         checkpoint=ckpt, interrupt_after=2)
    resumed = train_alignahead(task, spec, opt, AlignaheadConfig(), seed=1, progress=False,
                               checkpoint=ckpt)
    for n in full["students"]:
        assert resumed["students"][n]["history"] == full["students"][n]["history"]


def test_teacher_checkpoint_reused_and_mismatch_rejected(tmp_path):
    task = tiny_task()
    path = str(tmp_path / "teacher.pt")
    t1, r1 = get_teacher(task, TEACHER, OPT, path=path, progress=False)
    t2, r2 = get_teacher(task, TEACHER, OPT, path=path, progress=False)
    assert r2["loaded"] == path
    for a, b in zip(t1.state_dict().values(), t2.state_dict().values()):
        assert torch.equal(a, b)
    other = ModelSpec("gat", 16, 2, 2, 0.1)
    with pytest.raises(ValueError, match="was trained as .* but this run needs"):
        get_teacher(task, other, OPT, path=path, progress=False)
    # same architecture, other training split: its labels would leak into the student
    moved = Task(task.x, task.y, task.graph,
                 Split(task.split.val, task.split.train, task.split.test))
    with pytest.raises(ValueError, match="was trained as .* but this run needs"):
        get_teacher(moved, TEACHER, OPT, path=path, progress=False)


def test_cli_runs_and_writes_results(tmp_path, capsys):
    from gkd_ext.train.cli import main
    out = tmp_path / "r.json"
    main(["--method", "gcrd", "--dataset", "cora", "--epochs", "2", "--runs", "1",
          "--teacher", "gcn", "--teacher-layers", "2", "--no-progress", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["config"]["method"] == "gcrd" and len(res["per_seed"]) == 1
    assert "git_commit" in res["versions"] and res["per_seed"][0]["epoch_time_ms"] > 0


def test_cli_teacher_recipe_and_lcc(tmp_path):
    from gkd_ext.train.cli import main
    out = tmp_path / "r.json"
    main(["--method", "kd", "--dataset", "cora", "--lcc", "--epochs", "2", "--teacher-epochs", "4",
          "--teacher-lr", "0.02", "--teacher", "gcn", "--teacher-layers", "2", "--no-progress",
          "--out", str(out)])
    res = json.loads(out.read_text())
    seed = res["per_seed"][0]
    # the teacher ran its own 4 epochs, the student the 2 of --epochs
    assert seed["teacher"]["epochs"] == 4 and seed["teacher"]["train_time_s"] > 0
    assert seed["best_epoch"] <= 1 and res["config"]["lcc"] is True


def test_cli_bad_input(capsys):
    from gkd_ext.train.cli import main
    with pytest.raises(SystemExit):
        main(["--method", "nonsense"])
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--dataset", "no-such-graph", "--epochs", "1", "--no-progress"])
    assert exc.value.code == 2
    assert "no-such-graph" in capsys.readouterr().err


def test_cli_rejects_graph_classification_dataset(tmp_path, capsys):
    from gkd_ext.train.cli import main
    d = tmp_path / "tudataset" / "MUTAG"
    d.mkdir(parents=True)
    (d / "MUTAG_A.txt").write_text("1, 2\n2, 1\n")
    (d / "MUTAG_graph_indicator.txt").write_text("1\n1\n")
    (d / "MUTAG_graph_labels.txt").write_text("1\n")
    (d / "MUTAG_node_labels.txt").write_text("0\n1\n")
    with pytest.raises(SystemExit):
        main(["--dataset", "mutag", "--data-dir", str(tmp_path), "--epochs", "1", "--no-progress"])
    assert "graph-classification dataset" in capsys.readouterr().err
