"""Loaders on small files written in each exact format, the registry, and the real files."""
import collections
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gkd_ext.data import (GraphDataset, NodeDataset, RestrictedUnpickler, bundled_cora, csbm,
                          dataset_names, edge_homophily, load_dataset, load_heterophilous,
                          load_planetoid, load_ppi, load_shchur_npz, load_tu, restricted_load,
                          stratified_kfold, undirected_graph)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(),
                                  reason=f"shared data folder {SHARED} is absent")


def edge_set(graph):
    return set(map(tuple, graph.edge_index.t().tolist()))


def undirected(pairs):
    return {(u, v) for a, b in pairs for u, v in ((a, b), (b, a)) if u != v}


# ------------------------------------------------------------------ Shchur npz / zip
ADJ_PAIRS = [(0, 1), (1, 2), (2, 0), (3, 3), (3, 4), (4, 3), (0, 1)]  # loop, both dirs, dup


def write_shchur(path, object_class_names=False):
    n = 5
    r, c = zip(*ADJ_PAIRS)
    adj = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, n))
    adj.sum_duplicates()
    attr = sp.csr_matrix(np.arange(n * 3, dtype=np.float32).reshape(n, 3) % 2)
    arrays = dict(adj_data=adj.data, adj_indices=adj.indices.astype(np.int32),
                  adj_indptr=adj.indptr, adj_shape=np.array(adj.shape),
                  attr_data=attr.data, attr_indices=attr.indices, attr_indptr=attr.indptr,
                  attr_shape=np.array(attr.shape), labels=np.array([0, 1, 2, 1, 0], np.int8))
    if object_class_names:  # as in ms_academic_*: needs pickle, so it must never be read
        arrays["class_names"] = np.array(["a", 1, None], dtype=object)
    else:
        arrays["class_names"] = np.array(["a", "b", "c"])
    np.savez(path, **arrays)
    return attr.toarray()


def test_shchur_npz_symmetrised_without_self_loops(tmp_path):
    feats = write_shchur(tmp_path / "tiny.npz")
    ds = load_shchur_npz(tmp_path / "tiny.npz")
    assert isinstance(ds, NodeDataset) and ds.name == "tiny"
    assert edge_set(ds.graph) == undirected(ADJ_PAIRS)
    # attr_* CSR arrays load as a float32 sparse CSR x, built from the stored arrays
    assert ds.x.layout == torch.sparse_csr and ds.x.dtype == torch.float32
    assert ds.x.shape == (5, 3) and ds.num_features == 3 and ds.x._nnz() == int(feats.sum())
    np.testing.assert_array_equal(ds.x.to_dense().numpy(), feats)
    assert ds.y.tolist() == [0, 1, 2, 1, 0] and ds.y.dtype == torch.int64


def test_shchur_zip_with_object_class_names(tmp_path):
    write_shchur(tmp_path / "ms_academic_cs.npz", object_class_names=True)
    folder = tmp_path / "data" / "shchur_npz"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "coauthor-cs.zip", "w") as zf:
        zf.write(tmp_path / "ms_academic_cs.npz", "inner/ms_academic_cs.npz")
    ds = load_shchur_npz(folder / "coauthor-cs.zip")
    assert edge_set(ds.graph) == undirected(ADJ_PAIRS)
    ds = load_dataset("coauthor-cs", tmp_path / "data", seed=3, lcc=False)
    assert ds.name == "coauthor-cs" and ds.num_nodes == 5
    train, val, test = ds.masks()
    assert not (train & val).any() and bool((train | val | test).all())
    with pytest.raises(ValueError, match="no member named"):
        load_shchur_npz(folder / "coauthor-cs.zip", member="other.npz")


# ------------------------------------------------------------------ Planetoid
def write_planetoid(root, name="tiny"):
    """10 nodes: allx = nodes 0..5 (train = 0..2), test ids {6, 8, 9} listed as 9, 6, 8;
    id 7 lies in the test range but has no row (like CiteSeer's isolated nodes)."""
    F, C = 4, 3
    allx = np.arange(6 * F, dtype=np.float32).reshape(6, F) + 1
    ally = np.eye(C)[[0, 1, 2, 0, 1, 2]]
    tx = 100 + np.arange(3 * F, dtype=np.float32).reshape(3, F)
    ty = np.eye(C)[[2, 1, 0]]
    graph = collections.defaultdict(list)
    for u, v in [(0, 1), (1, 0), (1, 2), (2, 2), (3, 9), (6, 8), (6, 8), (4, 5)]:
        graph[u].append(v)
    objs = {"x": sp.csr_matrix(allx[:3]), "y": ally[:3], "tx": sp.csr_matrix(tx), "ty": ty,
            "allx": sp.csr_matrix(allx), "ally": ally, "graph": graph}
    for key, obj in objs.items():
        with open(root / f"ind.{name}.{key}", "wb") as f:
            pickle.dump(obj, f)
    (root / f"ind.{name}.test.index").write_text("9\n6\n8\n")
    return allx, tx


def test_planetoid_public_split_and_padding(tmp_path):
    allx, tx = write_planetoid(tmp_path)
    ds = load_planetoid(tmp_path, "tiny")
    assert ds.num_nodes == 10 and ds.num_classes == 3
    assert ds.x.layout == torch.sparse_csr and ds.x.dtype == torch.float32
    x = ds.x.to_dense()
    np.testing.assert_array_equal(x[:6].numpy(), allx)
    # tx row i belongs to the i-th id of test.index (9, 6, 8); id 7 is an empty row.
    for row, node in enumerate([9, 6, 8]):
        np.testing.assert_array_equal(x[node].numpy(), tx[row])
    assert not x[7].any() and int(ds.x.crow_indices()[8] - ds.x.crow_indices()[7]) == 0
    assert ds.y.tolist() == [0, 1, 2, 0, 1, 2, 1, 0, 0, 2]
    train, val, test = ds.masks()
    assert train.nonzero().view(-1).tolist() == [0, 1, 2]
    assert val.nonzero().view(-1).tolist() == [3, 4, 5]
    assert test.nonzero().view(-1).tolist() == [6, 8, 9]
    assert edge_set(ds.graph) == undirected([(0, 1), (1, 2), (3, 9), (6, 8), (4, 5)])


def test_planetoid_missing_file(tmp_path):
    write_planetoid(tmp_path)
    os.remove(tmp_path / "ind.tiny.ty")
    with pytest.raises(FileNotFoundError, match=r"ind\.tiny\.ty"):
        load_planetoid(tmp_path, "tiny")


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_restricted_unpickler_rejects_os_system(tmp_path, capfd):
    write_planetoid(tmp_path)
    marker = tmp_path / "ran"
    with open(tmp_path / "ind.tiny.graph", "wb") as f:
        pickle.dump({0: [_Evil(f"echo pwned; touch {marker}")]}, f)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global '(posix|os)\.system'"):
        load_planetoid(tmp_path, "tiny")
    assert not marker.exists()
    assert "pwned" not in capfd.readouterr().out
    # The plain unpickler would have run it: the file really is hostile.
    with open(tmp_path / "ind.tiny.graph", "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_restricted_unpickler_rejects_other_globals(tmp_path):
    path = tmp_path / "obj.pkl"
    for obj in (collections.OrderedDict(a=1), np.float64(1.5), eval):
        path.write_bytes(pickle.dumps(obj))
        with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
            restricted_load(path)
    # What Planetoid files hold round-trips.
    m = sp.csr_matrix(np.eye(3, dtype=np.float32))
    path.write_bytes(pickle.dumps([m, np.arange(4), collections.defaultdict(list)]))
    out = restricted_load(path)
    assert (out[0] != m).nnz == 0 and out[1].tolist() == [0, 1, 2, 3]
    assert issubclass(RestrictedUnpickler, pickle.Unpickler)


# ------------------------------------------------------------------ heterophilous
def write_heterophilous(path, n=6, splits=10):
    rng = np.random.default_rng(0)
    edges = np.array([[0, 1], [1, 2], [2, 3], [4, 5], [5, 0]], dtype=np.int64)
    train = np.zeros((splits, n), bool)
    val = np.zeros((splits, n), bool)
    for s in range(splits):
        perm = rng.permutation(n)
        train[s, perm[:3]] = True
        val[s, perm[3:5]] = True
    test = ~(train | val)
    np.savez_compressed(path, node_features=rng.random((n, 3)).astype(np.float32),
                        node_labels=np.array([0, 1, 0, 1, 2, 2]), edges=edges,
                        train_masks=train, val_masks=val, test_masks=test)
    return edges, train, val, test


def test_heterophilous_npz(tmp_path):
    edges, train, val, test = write_heterophilous(tmp_path / "roman_empire.npz")
    for split in (0, 7):
        ds = load_heterophilous(tmp_path / "roman_empire.npz", split=split)
        assert ds.name == "roman-empire" and ds.num_classes == 3
        assert edge_set(ds.graph) == undirected(edges.tolist())
        assert ds.graph.num_edges == 2 * len(edges)
        assert ds.train_mask.tolist() == train[split].tolist()
        assert ds.val_mask.tolist() == val[split].tolist()
        assert ds.test_mask.tolist() == test[split].tolist()
    with pytest.raises(ValueError, match=r"'split' must lie in \[0, 10\)"):
        load_heterophilous(tmp_path / "roman_empire.npz", split=10)
    np.savez(tmp_path / "bad.npz", node_features=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="lacks"):
        load_heterophilous(tmp_path / "bad.npz")


# ------------------------------------------------------------------ TU
def write_tu(root, name="TINY"):
    """Three graphs: a triangle (nodes 1-3), an edge (4-5), a path 6-7-8; 1-based ids."""
    root.mkdir(parents=True, exist_ok=True)
    und = [(1, 2), (2, 3), (3, 1), (4, 5), (6, 7), (7, 8)]
    lines = [f"{a}, {b}" for a, b in und] + [f"{b}, {a}" for a, b in und]
    (root / f"{name}_A.txt").write_text("\n".join(lines) + "\n")
    (root / f"{name}_graph_indicator.txt").write_text("1\n1\n1\n2\n2\n3\n3\n3\n")
    (root / f"{name}_graph_labels.txt").write_text("1\n-1\n1\n")
    (root / f"{name}_node_labels.txt").write_text("1\n2\n1\n3\n1\n2\n2\n1\n")
    (root / f"{name}_node_attributes.txt").write_text(
        "\n".join(f" {i}.5, {-i}.0" for i in range(8)) + "\n")
    return und


def test_tu_txt(tmp_path):
    und = write_tu(tmp_path / "TINY")
    ds = load_tu(tmp_path / "TINY", "TINY")
    assert isinstance(ds, GraphDataset) and len(ds) == 3 and ds.num_nodes == 8
    assert ds.batch.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert ds.y.tolist() == [1, 0, 1]
    assert edge_set(ds.graph) == undirected([(a - 1, b - 1) for a, b in und])
    # features: 2 attributes then a one-hot of the labels 1..3
    assert ds.x.shape == (8, 5)
    torch.testing.assert_close(ds.x[1], torch.tensor([1.5, -1.0, 0.0, 1.0, 0.0]))
    graph, x, batch, y = ds.collate([2, 0])
    assert batch.tolist() == [0, 0, 0, 1, 1, 1] and y.tolist() == [1, 1]
    torch.testing.assert_close(x[:3], ds.x[5:8])
    assert edge_set(graph) == undirected([(0, 1), (1, 2), (3, 4), (4, 5), (5, 3)])
    # PyG's <root>/<NAME>/raw/ layout is found too; a missing file is named.
    write_tu(tmp_path / "OTHER" / "raw", "OTHER")
    assert load_tu(tmp_path / "OTHER", "OTHER").num_graphs == 3
    os.remove(tmp_path / "TINY" / "TINY_graph_labels.txt")
    with pytest.raises(FileNotFoundError, match="TINY_graph_labels.txt"):
        load_tu(tmp_path / "TINY", "TINY")


def test_stratified_kfold():
    y = torch.tensor([0] * 23 + [1] * 17)
    folds = stratified_kfold(y, 10, seed=1)
    assert len(folds) == 10
    tests = torch.cat([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(40))
    for train, test in folds:
        assert set(train.tolist()).isdisjoint(test.tolist()) and len(train) + len(test) == 40
        assert 2 <= int((y[test] == 0).sum()) <= 3 and 1 <= int((y[test] == 1).sum()) <= 2
        assert len(test) == 4
    again = stratified_kfold(y, 10, seed=1)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(folds, again))
    other = stratified_kfold(y, 10, seed=2)
    assert any(not torch.equal(a[1], b[1]) for a, b in zip(folds, other))
    with pytest.raises(ValueError, match="n_folds"):
        stratified_kfold(y, 1)


# ------------------------------------------------------------------ PPI
def write_ppi(root, links_key="links"):
    """train: graphs 1 (nodes 0-2) and 2 (nodes 3-4); valid: graph 3; test: graph 4."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    spec = {"train": (5, [1, 1, 1, 2, 2], [(0, 1), (1, 2), (3, 4), (2, 2)]),
            "valid": (3, [3, 3, 3], [(0, 1), (0, 2)]),
            "test": (2, [4, 4], [(0, 1)])}
    out = {}
    for split, (n, gid, links) in spec.items():
        data = {"directed": False, "multigraph": False, "graph": {},
                "nodes": [{"id": i, "test": split == "test", "val": split == "valid"}
                          for i in range(n)],
                links_key: [{"source": a, "target": b} for a, b in links]}
        (root / f"{split}_graph.json").write_text(json.dumps(data))
        feats = rng.random((n, 4)).astype(np.float32)
        labels = (rng.random((n, 6)) > 0.5).astype(np.int64)
        np.save(root / f"{split}_feats.npy", feats)
        np.save(root / f"{split}_labels.npy", labels)
        np.save(root / f"{split}_graph_id.npy", np.array(gid))
        out[split] = (feats, labels)
    return out


@pytest.mark.parametrize("links_key", ["links", "edges"])
def test_ppi_raw(tmp_path, links_key):
    arrays = write_ppi(tmp_path / "ppi", links_key)
    ds = load_ppi(tmp_path / "ppi")
    assert ds.multilabel and ds.num_nodes == 10 and ds.num_classes == 6
    assert ds.y.dtype == torch.float32 and ds.y.shape == (10, 6)
    np.testing.assert_array_equal(ds.x[5:8].numpy(), arrays["valid"][0])
    np.testing.assert_array_equal(ds.y[8:].numpy(), arrays["test"][1])
    assert ds.graph_id.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert [int(m.sum()) for m in ds.masks()] == [5, 3, 2]
    assert edge_set(ds.graph) == undirected([(0, 1), (1, 2), (3, 4), (5, 6), (5, 7), (8, 9)])
    val = ds.subgraph(ds.val_mask)
    assert val.num_nodes == 3 and edge_set(val.graph) == undirected([(0, 1), (0, 2)])
    assert load_dataset("ppi", tmp_path).num_nodes == 10


def test_ppi_bad_files(tmp_path):
    write_ppi(tmp_path / "ppi")
    np.save(tmp_path / "ppi" / "valid_feats.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"valid_labels\.npy.*expected 4, one per row of valid_feats"):
        load_ppi(tmp_path / "ppi")
    os.remove(tmp_path / "ppi" / "test_graph_id.npy")
    with pytest.raises(FileNotFoundError, match="test_graph_id.npy"):
        load_ppi(tmp_path / "ppi")


# ------------------------------------------------------------------ registry
def test_registry_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("GKD_DATA", raising=False)
    with pytest.raises(ValueError, match=r"unknown dataset 'ogbn-foo'.*coauthor-physics.*mutag"):
        load_dataset("ogbn-foo")
    with pytest.raises(FileNotFoundError, match=r"--data-dir.*GKD_DATA"):
        load_dataset("chameleon")
    with pytest.raises(FileNotFoundError, match=r"heterophilous[/\\]amazon_ratings\.npz"):
        load_dataset("amazon-ratings", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"shchur_npz[/\\]ms_academic_phy\.npz"):
        load_dataset("coauthor-physics", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"IMDB-BINARY[/\\]IMDB-BINARY_A\.txt"):
        load_dataset("imdb-binary", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"planetoid[/\\]ind\.pubmed\.x"):
        load_dataset("planetoid-pubmed", tmp_path)


def test_registry_names_and_env(tmp_path, monkeypatch):
    names = dataset_names()
    for n in ("cora-full", "amazon-computers", "coauthor-physics", "pubmed"):
        assert n in names["shchur"]
    for n in ("wisconsin", "actor", "questions", "tolokers", "squirrel-filtered"):
        assert n in names["heterophilous"]
    for n in ("mutag", "proteins", "enzymes", "nci1", "dd", "imdb-binary", "collab"):
        assert n in names["tu"]
    write_heterophilous(tmp_path / "x.npz")
    (tmp_path / "heterophilous").mkdir()
    os.replace(tmp_path / "x.npz", tmp_path / "heterophilous" / "squirrel_filtered.npz")
    write_tu(tmp_path / "tudataset" / "MUTAG", "MUTAG")
    monkeypatch.setenv("GKD_DATA", str(tmp_path))
    ds = load_dataset("Squirrel_Filtered", split=3)
    assert ds.name == "squirrel-filtered" and ds.num_nodes == 6
    assert load_dataset("MUTAG").num_graphs == 3
    # cora falls back to the bundled copy when the folder lacks it
    assert load_dataset("cora", lcc=False).num_nodes == 2708


def test_bundled_cora_default(monkeypatch):
    monkeypatch.delenv("GKD_DATA", raising=False)
    ds = load_dataset("cora", seed=1, lcc=False)
    assert ds.num_nodes == 2708 and ds.graph.num_edges == 10556
    train, val, _ = ds.masks()
    assert int(train.sum()) == 140 and int(val.sum()) == 210
    other = load_dataset("cora", seed=2, lcc=False)
    assert not torch.equal(train, other.train_mask)
    assert bundled_cora().train_mask is None


# ------------------------------------------------------------------ synthetic
@pytest.mark.parametrize("h", [0.1, 0.8])
def test_csbm_homophily_knob(h):
    ds = csbm(2000, 4, 8, h, 10.0, seed=0)
    assert abs(edge_homophily(ds.graph, ds.y) - h) < 0.03
    assert abs(ds.graph.num_edges / 2000 - 10.0) < 0.5
    assert ds.y.bincount().tolist() == [500] * 4
    assert edge_set(ds.graph) == {(v, u) for u, v in edge_set(ds.graph)}
    assert not (ds.graph.col == ds.graph.row).any()
    # features cluster by class: class means are farther apart than the noise
    means = torch.stack([ds.x[ds.y == c].mean(0) for c in range(4)])
    assert torch.cdist(means, means)[~torch.eye(4, dtype=torch.bool)].min() > 0.5
    same = csbm(2000, 4, 8, h, 10.0, seed=0)
    assert torch.equal(same.x, ds.x) and torch.equal(same.graph.col, ds.graph.col)
    with pytest.raises(ValueError, match="homophily"):
        csbm(100, 4, 8, 1.5, 5.0)


# ------------------------------------------------------------------ the real files
SHCHUR_COUNTS = {"cora": (2708, 10556, 1433, 7), "citeseer": (3312, 9072, 3703, 6),
                 "amazon-photo": (7650, 238162, 745, 8), "coauthor-cs": (18333, 163788, 6805, 15)}
HETERO_COUNTS = {"chameleon": (2277, 31371, 2325, 5, 1092), "squirrel-filtered": (2223, 46998, 2089, 5, 1053),
                 "texas": (183, 279, 1703, 5, 87), "minesweeper": (10000, 39402, 7, 2, 5000)}


@needs_shared
@pytest.mark.parametrize("name", list(SHCHUR_COUNTS))
def test_real_shchur(name):
    n, e, f, c = SHCHUR_COUNTS[name]
    ds = load_dataset(name, SHARED, lcc=False)
    assert (ds.num_nodes, ds.graph.num_edges, ds.num_features, ds.num_classes) == (n, e, f, c)


@needs_shared
def test_real_planetoid():
    cora = load_dataset("planetoid-cora", SHARED)
    assert cora.num_nodes == 2708 and cora.graph.num_edges == 10556
    assert [int(m.sum()) for m in cora.masks()] == [140, 500, 1000]
    cite = load_dataset("planetoid-citeseer", SHARED)
    assert cite.num_nodes == 3327 and cite.num_features == 3703 and cite.num_classes == 6
    assert [int(m.sum()) for m in cite.masks()] == [120, 500, 1000]
    assert cite.x.layout == torch.sparse_csr and cite.x._nnz() == 105165
    zero_rows = (cite.x.crow_indices().diff() == 0) & ~cite.test_mask
    assert int(zero_rows[2312:].sum()) == 15  # the padded isolated test ids


@needs_shared
@pytest.mark.parametrize("name", list(HETERO_COUNTS))
def test_real_heterophilous(name):
    n, e, f, c, train = HETERO_COUNTS[name]
    ds = load_dataset(name, SHARED)
    assert (ds.num_nodes, ds.graph.num_edges, ds.num_features, ds.num_classes) == (n, 2 * e, f, c)
    assert int(ds.train_mask.sum()) == train


@needs_shared
def test_real_tu():
    mutag = load_dataset("mutag", SHARED)
    assert (mutag.num_graphs, mutag.num_nodes, mutag.graph.num_edges) == (188, 3371, 7442)
    assert mutag.num_features == 7 and mutag.y.bincount().tolist() == [63, 125]
    proteins = load_dataset("proteins", SHARED)
    assert (proteins.num_graphs, proteins.num_nodes, proteins.graph.num_edges) == (1113, 43471, 162088)
    assert proteins.num_features == 1 + 3


def test_connected_components_and_largest_component():
    from gkd_ext.data.dataset import connected_components
    # components {0,1,2,5} (a chain listed out of order), {3,4}, {6}
    g = undirected_graph([5, 2, 1, 3], [2, 1, 0, 4], 7)
    comp = connected_components(g)
    assert comp.tolist() == [0, 0, 0, 3, 3, 0, 6]
    ds = NodeDataset("t", torch.arange(7.0).view(7, 1), torch.tensor([0, 1, 0, 1, 0, 1, 0]), g)
    lcc = ds.largest_connected_component()
    assert lcc.num_nodes == 4 and lcc.x.view(-1).tolist() == [0.0, 1.0, 2.0, 5.0]
    assert edge_set(lcc.graph) == undirected([(3, 2), (2, 1), (1, 0)])
    # agrees with scipy on a larger random graph
    from scipy.sparse.csgraph import connected_components as scipy_cc
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 3000, 2500), rng.integers(0, 3000, 2500)
    g = undirected_graph(src, dst, 3000)
    ours = connected_components(g).numpy()
    n, theirs = scipy_cc(sp.coo_matrix((np.ones(len(src)), (src, dst)), shape=(3000, 3000)),
                         directed=False)
    assert len(np.unique(ours)) == n
    pairs = set(zip(ours.tolist(), theirs.tolist()))
    assert len(pairs) == n   # the same partition


def test_load_dataset_lcc_split(monkeypatch):
    monkeypatch.delenv("GKD_DATA", raising=False)
    ds = load_dataset("cora", seed=0, lcc=True)
    assert ds.num_nodes == 2485   # Shchur et al., Table 1
    # the Shchur family's protocol is the default; other families keep every node
    assert load_dataset("cora", seed=0).num_nodes == 2485
    assert load_dataset("synthetic-csbm", seed=0).num_nodes == 10_000
    train, val, test = ds.masks()
    assert int(train.sum()) == 140 and int(val.sum()) == 210 and int(test.sum()) == 2485 - 350


def test_registry_synthetic_csbm(monkeypatch):
    from gkd_ext.data import dataset_path
    monkeypatch.delenv("GKD_DATA", raising=False)   # generated: needs no data folder
    ds = load_dataset("synthetic-csbm", seed=1)
    assert ds.num_nodes == 10_000 and ds.num_classes == 5
    assert abs(edge_homophily(ds.graph, ds.y) - 0.8) < 0.03
    assert int(ds.train_mask.sum()) == 100 and int(ds.val_mask.sum()) == 150
    het = load_dataset("Synthetic_CSBM_Heterophilous", seed=1)
    assert abs(edge_homophily(het.graph, het.y) - 0.2) < 0.03
    assert not torch.equal(load_dataset("synthetic-csbm", seed=2).x, ds.x)
    assert "synthetic-csbm" in dataset_names()["synthetic"]
    with pytest.raises(ValueError, match="generated"):
        dataset_path("synthetic-csbm", ".")


def test_csr_features_subgraph_and_collate():
    from gkd_ext.data import csr_features, select_rows
    rng = np.random.default_rng(3)
    dense = (rng.random((9, 6)) < 0.3) * rng.integers(1, 5, (9, 6)).astype(np.float32)
    m = sp.csr_matrix(dense)
    # unsorted columns and a duplicate entry are canonicalised (sorted, summed)
    data, indices, indptr = m.data.copy(), m.indices.copy(), m.indptr.copy()
    r = int(np.argmax(np.diff(indptr)))
    lo, hi = indptr[r], indptr[r + 1]
    indices[lo:hi], data[lo:hi] = indices[lo:hi][::-1].copy(), data[lo:hi][::-1].copy()
    x = csr_features(data, indices, indptr, dense.shape)
    assert x.layout == torch.sparse_csr and x.dtype == torch.float32
    np.testing.assert_array_equal(x.to_dense().numpy(), dense)
    cols = x.col_indices()
    for row in range(9):
        seg = cols[x.crow_indices()[row]:x.crow_indices()[row + 1]]
        assert torch.equal(seg, seg.sort().values)
    idx = torch.tensor([7, 0, 7, 3])
    torch.testing.assert_close(select_rows(x, idx).to_dense(), torch.from_numpy(dense)[idx])
    assert select_rows(x, torch.zeros(0, dtype=torch.long)).shape == (0, 6)
    # subgraph / largest component keep CSR and agree with the dense dataset
    g = undirected_graph([0, 1, 2, 4, 5, 6], [1, 2, 3, 5, 6, 7], 9)
    y = torch.arange(9) % 3
    sparse_ds = NodeDataset("s", x, y, g)
    dense_ds = NodeDataset("d", torch.from_numpy(dense), y, g)
    for a, b in ((sparse_ds.largest_connected_component(), dense_ds.largest_connected_component()),
                 (sparse_ds.subgraph(y != 1), dense_ds.subgraph(y != 1))):
        assert a.x.layout == torch.sparse_csr and a.num_features == 6
        torch.testing.assert_close(a.x.to_dense(), b.x)
        assert edge_set(a.graph) == edge_set(b.graph) and torch.equal(a.y, b.y)
    gd = GraphDataset("g", x, g, torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2]), torch.tensor([0, 1, 0]))
    _, xb, _, _ = gd.collate([2, 0])
    torch.testing.assert_close(xb.to_dense(), torch.from_numpy(dense)[[8, 0, 1, 2, 3]])


def test_heterophilous_runs_cover_the_given_splits(tmp_path):
    path = tmp_path / "x.npz"
    write_heterophilous(path)
    from gkd_ext.data import load_heterophilous
    fixed = [load_heterophilous(path, split=s).train_mask for s in range(10)]
    by_seed = [load_heterophilous(path, split=None, seed=s).train_mask for s in range(13)]
    assert all(torch.equal(fixed[s % 10], m) for s, m in enumerate(by_seed))
    assert not torch.equal(fixed[0], fixed[1])
