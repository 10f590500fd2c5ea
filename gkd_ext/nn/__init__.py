"""GNN layers and models built on the gkd_ext ops, and the model factory."""
from .functional import edge_softmax, global_pool  # noqa: F401
from .gat import GAT, GATConv  # noqa: F401
from .gcn import GCN, GCNConv, gcn_graph  # noqa: F401
from .gin import GIN, GINConv  # noqa: F401
from .mlp import MLP  # noqa: F401
from .models import MODEL_NAMES, build_model, prepare_graph, remove_self_loops  # noqa: F401
from .sage import GraphSAGE, SAGEConv  # noqa: F401

__all__ = ["edge_softmax", "global_pool", "GAT", "GATConv", "GCN", "GCNConv", "gcn_graph",
           "GIN", "GINConv", "MLP", "MODEL_NAMES", "build_model", "prepare_graph",
           "remove_self_loops", "GraphSAGE", "SAGEConv"]
