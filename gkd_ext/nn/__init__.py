"""GNN layers and models built on the gkd_ext ops, and the model factory."""
from .base import (GraphModel, WholeGraphRows, plain_graph, remove_self_loops,  # noqa: F401
                   self_loop_graph)
from .ensemble import Ensemble, mean_probability_logits  # noqa: F401
from .framelet import (FMLP, FrameletOperators, SpatUFG, SpatUFGConv,  # noqa: F401
                       framelet_operators)
from .functional import edge_softmax, global_pool  # noqa: F401
from .gat import GAT, GATConv  # noqa: F401
from .gcn import GCN, GCNConv, gcn_graph  # noqa: F401
from .gin import GIN, GINConv  # noqa: F401
from .mlp import MLP  # noqa: F401
from .models import MODEL_NAMES, build_model, canonical_model_name  # noqa: F401
from .readout import GraphClassifier, Pool  # noqa: F401
from .sage import GraphSAGE, SAGEConv  # noqa: F401

__all__ = ["GraphModel", "WholeGraphRows", "Ensemble", "mean_probability_logits", "plain_graph", "remove_self_loops", "self_loop_graph", "edge_softmax",
           "global_pool", "GAT", "GATConv", "GCN", "GCNConv", "gcn_graph", "GIN", "GINConv",
           "MLP", "MODEL_NAMES", "build_model", "canonical_model_name", "GraphClassifier", "Pool",
           "GraphSAGE", "SAGEConv", "FMLP", "FrameletOperators", "SpatUFG", "SpatUFGConv",
           "framelet_operators"]
