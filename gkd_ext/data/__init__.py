"""Datasets: loaders for the formats in ../shared/data, the registry, splits, synthetic graphs."""
from .dataset import (GraphDataset, NodeDataset, csr_features, select_rows,  # noqa: F401
                      stratified_kfold, undirected_graph)
from .features import node_features  # noqa: F401
from .heterophilous import load_heterophilous  # noqa: F401
from .planetoid import (RestrictedUnpickler, UnsafePickleError, load_planetoid,  # noqa: F401
                        restricted_load)
from .ppi import load_ppi  # noqa: F401
from .safe_io import DataFormatError  # noqa: F401
from .registry import dataset_names, dataset_path, load_dataset  # noqa: F401
from .shchur import bundled_cora, load_shchur_npz, per_class_split  # noqa: F401
from .synthetic import (WORKLOADS, csbm, edge_homophily, power_law_graph,  # noqa: F401
                        workload_graph)
from .tu import load_tu  # noqa: F401
