"""The Graph type: construction, edge order, transpose and helpers."""
import pytest
import torch

import gkd_ext
from gkd_ext import Graph


def test_csr_by_destination_sorted_by_source():
    ei = torch.tensor([[3, 1, 0, 2, 1], [1, 1, 0, 2, 0]])
    g = Graph.from_edge_index(ei, 4)
    assert g.rowptr.tolist() == [0, 2, 4, 5, 5]
    assert g.col.tolist() == [0, 1, 1, 3, 2]
    assert torch.equal(g.edge_index, ei[:, g.perm])
    assert g.degree("in").tolist() == [2, 2, 1, 0]
    assert g.degree("out").tolist() == [1, 2, 1, 1]


def test_int32_indices_accepted():
    g = Graph.from_edge_index(torch.tensor([[0, 1], [1, 0]], dtype=torch.int32))
    assert g.rowptr.dtype == torch.int64 and g.col.dtype == torch.int64 and g.num_dst == 2


def test_transpose_is_consistent_and_cached():
    gen = torch.Generator().manual_seed(1)
    ei = torch.randint(0, 30, (2, 200), generator=gen)
    g = Graph.from_edge_index(ei, (30, 30))
    t_rowptr, t_col, t_perm = g.transpose()
    assert g.transpose()[0] is t_rowptr
    src_of = torch.repeat_interleave(torch.arange(30), t_rowptr[1:] - t_rowptr[:-1])
    assert torch.equal(g.col[t_perm], src_of)
    assert torch.equal(g.row[t_perm], t_col)
    assert sorted(t_perm.tolist()) == list(range(200))


def test_from_sparse_torch_and_scipy():
    dense = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0]])      # [num_dst=2, num_src=3]
    x = torch.randn(3, 4)
    for adj in (dense.to_sparse(), dense.to_sparse_csr()):
        g = Graph.from_sparse(adj)
        assert (g.num_src, g.num_dst) == (3, 2)
        torch.testing.assert_close(gkd_ext.spmm(g, x), dense @ x)
    sp = pytest.importorskip("scipy.sparse")
    g = Graph.from_sparse(sp.csr_matrix(dense.numpy()))
    torch.testing.assert_close(gkd_ext.spmm(g, x), dense @ x)
    with pytest.raises(TypeError, match="expected a torch sparse COO/CSR tensor or a scipy.sparse"):
        Graph.from_sparse(dense.numpy())


def test_add_self_loops_and_gcn_norm():
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    g = Graph.from_edge_index(ei, 3).add_self_loops()
    assert g.num_edges == 7
    w = g.gcn_norm()
    adj = torch.zeros(3, 3)
    adj[g.row, g.col] = 1.0
    dinv = adj.sum(1).pow(-0.5)
    expected = dinv[:, None] * adj * dinv[None, :]
    torch.testing.assert_close(w, expected[g.row, g.col])
    with pytest.raises(ValueError, match="must be square"):
        Graph.from_edge_index(torch.tensor([[0], [1]]), (1, 2)).add_self_loops()


def test_stored_values_on_self_loops():
    g = Graph.from_edge_index(torch.tensor([[0], [1]]), 2, value=torch.tensor([5.0]))
    g2 = g.add_self_loops(fill_value=2.0)
    dense = torch.zeros(2, 2)
    dense[g2.row, g2.col] = g2.value
    assert dense.tolist() == [[2.0, 0.0], [5.0, 2.0]]


def test_rectangular_num_nodes_pair():
    g = Graph.from_edge_index(torch.tensor([[4, 0], [1, 0]]), (5, 2))
    assert (g.num_src, g.num_dst, g.is_square) == (5, 2, False)
    with pytest.raises(ValueError, match="'num_nodes' must be an int or a \\(num_src, num_dst\\) pair"):
        Graph.from_edge_index(torch.tensor([[0], [0]]), (1, 2, 3))


def test_value_validation():
    ei = torch.tensor([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="'value' must have shape \\[E\\] or \\[E, H\\] with E = 2"):
        Graph.from_edge_index(ei, 2, value=torch.ones(3))
    with pytest.raises(TypeError, match="'value' must be a floating-point tensor"):
        Graph.from_edge_index(ei, 2, value=torch.ones(2, dtype=torch.long))


def test_to_device_keeps_cache():
    g = Graph.from_edge_index(torch.tensor([[0, 1], [1, 0]]), 2)
    g.transpose()
    h = g.to("cpu")
    assert h._transpose is not None and torch.equal(h.rowptr, g.rowptr)


def test_missing_extension_names_the_build_command(tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    # A copy of the package without the compiled module, under another name so that an
    # installed (editable) gkd_ext cannot shadow it.
    src = Path(gkd_ext.__file__).parent
    shutil.copytree(src, tmp_path / "gkd_ext_unbuilt", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    proc = subprocess.run([sys.executable, "-c", "import gkd_ext_unbuilt"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "pip install --no-build-isolation -e ." in proc.stderr


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_has_self_loops_in_row_chunks(chunk):
    # Found chunk by chunk (no E-long row index kept, e.g. for a graph loaded as CSR), as the
    # comparison with a row index already held finds it.
    gen = torch.Generator().manual_seed(0)
    ei = torch.randint(0, 20, (2, 80), generator=gen)
    ei = ei[:, ei[0] != ei[1]]
    for edges, want in ((ei, False), (torch.cat([ei, torch.tensor([[17], [17]])], 1), True),
                        (torch.empty(2, 0, dtype=torch.long), False)):
        g = Graph.from_edge_index(edges, 20)
        assert g.has_self_loops(chunk) is want   # with the row index it holds
        g._row = None
        assert g.has_self_loops(chunk) is want and g._row is None
