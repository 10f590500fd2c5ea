"""Datasets: the bundled Cora, Shchur et al. npz files, splits and synthetic graphs."""
from .shchur import NodeDataset, bundled_cora, load_shchur_npz, per_class_split  # noqa: F401
from .synthetic import WORKLOADS, power_law_graph, workload_graph  # noqa: F401
