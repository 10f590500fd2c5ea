"""GNN layers and models built on the gkd_ext ops."""
from .gcn import GCN, GCNConv  # noqa: F401
