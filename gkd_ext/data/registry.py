"""The dataset registry: standard names -> loader and file, resolved under a data folder."""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple, Union

from .dataset import GraphDataset, NodeDataset
from .heterophilous import load_heterophilous
from .planetoid import load_planetoid
from .ppi import load_ppi
from .shchur import BUNDLED_CORA, load_shchur_npz, per_class_split
from .synthetic import csbm
from .tu import load_tu

ENV_VAR = "GKD_DATA"

# Shchur et al. npz: name -> (npz file name, zip names that may hold it).
SHCHUR = {
    "cora": ("cora.npz", ("cora.zip",)),
    "citeseer": ("citeseer.npz", ("citeseer.zip",)),
    "pubmed": ("pubmed.npz", ("pubmed.zip",)),
    "cora-full": ("cora_full.npz", ("cora-full.zip", "cora_full.zip")),
    "amazon-computers": ("amazon_electronics_computers.npz", ("amazon-computers.zip",)),
    "amazon-photo": ("amazon_electronics_photo.npz", ("amazon-photo.zip",)),
    "coauthor-cs": ("ms_academic_cs.npz", ("coauthor-cs.zip",)),
    "coauthor-physics": ("ms_academic_phy.npz", ("coauthor-physics.zip", "coauthor-phy.zip")),
}
PLANETOID = {"planetoid-cora": "cora", "planetoid-citeseer": "citeseer",
             "planetoid-pubmed": "pubmed"}
HETEROPHILOUS = ("chameleon", "squirrel", "chameleon-filtered", "squirrel-filtered", "texas",
                 "cornell", "wisconsin", "actor", "roman-empire", "amazon-ratings",
                 "minesweeper", "tolokers", "questions")
TU = {name.lower().replace("_", "-"): name for name in (
    "MUTAG", "PROTEINS", "PROTEINS_full", "ENZYMES", "NCI1", "NCI109", "DD", "PTC_MR",
    "PTC_FM", "PTC_FR", "PTC_MM", "Mutagenicity", "FRANKENSTEIN", "COX2", "BZR",
    "IMDB-BINARY", "IMDB-MULTI", "COLLAB", "REDDIT-BINARY", "REDDIT-MULTI-5K",
    "REDDIT-MULTI-12K")}

# The sets whose literature scores ROC-AUC (binary and imbalanced: Platonov et al. 2023).
ROC_AUC_SETS = ("minesweeper", "tolokers", "questions")
# Families evaluated on their largest connected component by default (Shchur et al. 2018).
LCC_FAMILIES = ("shchur",)

# Generated, no file: name -> edge homophily of a contextual SBM with 10,000 nodes, 5 classes,
# 64 features and mean degree 10, whose class means are weak enough (mean_scale) that the graph
# matters. The seed draws the graph, the features and the 20/30-per-class split.
SYNTHETIC = {"synthetic-csbm": 0.8, "synthetic-csbm-heterophilous": 0.2}
CSBM_SIZE = dict(num_nodes=10_000, num_classes=5, feature_dim=64, avg_degree=10.0, mean_scale=0.2)


def dataset_names() -> Dict[str, Tuple[str, ...]]:
    """Every known dataset name, grouped by family."""
    return {"shchur": tuple(SHCHUR), "planetoid": tuple(PLANETOID),
            "heterophilous": HETEROPHILOUS, "tu": tuple(TU), "ppi": ("ppi",),
            "synthetic": tuple(SYNTHETIC)}


def _family(name: str) -> str:
    if name in SHCHUR:
        return "shchur"
    if name in PLANETOID:
        return "planetoid"
    if name in HETEROPHILOUS:
        return "heterophilous"
    if name in TU:
        return "tu"
    if name == "ppi":
        return "ppi"
    if name in SYNTHETIC:
        return "synthetic"
    known = ", ".join(n for names in dataset_names().values() for n in names)
    raise ValueError(f"load_dataset: unknown dataset {name!r}; known datasets: {known}")


def _normalise(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def _with_split(ds: NodeDataset, seed: int, lcc: bool) -> NodeDataset:
    if lcc:
        ds = ds.largest_connected_component()
    ds.train_mask, ds.val_mask, ds.test_mask = per_class_split(ds.y, seed=seed)
    return ds


def dataset_path(name: str, data_dir: Union[str, os.PathLike]) -> str:
    """Where :func:`load_dataset` looks for ``name`` under ``data_dir`` (a file or a folder;
    for Shchur sets the npz if present, else the first zip present, else the npz path)."""
    name = _normalise(name)
    family, data_dir = _family(name), os.fspath(data_dir)
    if family == "synthetic":
        raise ValueError(f"dataset_path: {name!r} is generated and has no file")
    if family == "shchur":
        npz, zips = SHCHUR[name]
        folder = os.path.join(data_dir, "shchur_npz")
        for candidate in (npz,) + zips:
            if os.path.exists(os.path.join(folder, candidate)):
                return os.path.join(folder, candidate)
        return os.path.join(folder, npz)
    if family == "planetoid":
        return os.path.join(data_dir, "planetoid")
    if family == "heterophilous":
        return os.path.join(data_dir, "heterophilous", name.replace("-", "_") + ".npz")
    if family == "tu":
        return os.path.join(data_dir, "tudataset", TU[name])
    return os.path.join(data_dir, "ppi")


def load_dataset(name: str, data_dir: Optional[Union[str, os.PathLike]] = None,
                 split: Optional[int] = 0, seed: int = 0,
                 lcc: Optional[bool] = None) -> Union[NodeDataset, GraphDataset]:
    """Load a dataset by its standard lower-case name.

    ``data_dir`` (default: the ``GKD_DATA`` environment variable) is a folder laid out like
    ``../shared/data``: ``shchur_npz/`` (npz or zip), ``planetoid/`` (``ind.*``),
    ``heterophilous/`` (npz), ``tudataset/<NAME>/`` (TU txt) and ``ppi/`` (PyG raw PPI).
    Without a data folder only the bundled Cora and the generated ``synthetic-csbm`` (edge
    homophily 0.8) and ``synthetic-csbm-heterophilous`` (0.2) are available.

    Splits follow each family's protocol: Shchur sets get 20 train / 30 validation nodes per
    class drawn with ``seed``, the rest test, on the largest connected component as Shchur et
    al. evaluate (``lcc=None`` means the family's default: on for Shchur sets, off elsewhere;
    ``lcc=False`` keeps every node); ``planetoid-*`` the public split; heterophilous sets the
    given mask number ``split`` (0..9; ``None``: number ``seed % 10``, so seeds 0..9 run every
    given split); PPI its 20/2/2 graphs. TU sets return a :class:`GraphDataset`; build
    cross-validation folds with :func:`stratified_kfold`.

    Raises:
        ValueError: unknown name (the message lists the known ones).
        FileNotFoundError: no data folder was given, or the file is not in it (the message
            names the path that was tried).
    """
    name = _normalise(name)
    family = _family(name)
    if lcc is None:
        lcc = family in LCC_FAMILIES
    data = _load(name, family, data_dir, split, seed, bool(lcc))
    if name in ROC_AUC_SETS:
        data.metric = "roc_auc"
    return data


def _load(name: str, family: str, data_dir, split: int, seed: int, lcc: bool):
    if family == "synthetic":
        return csbm(homophily=SYNTHETIC[name], seed=seed, **CSBM_SIZE)
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or None
    if data_dir is None:
        if name == "cora":
            return _with_split(load_shchur_npz(BUNDLED_CORA, name="cora"), seed, lcc)
        raise FileNotFoundError(
            f"load_dataset: {name!r} is not bundled (only 'cora' is); pass --data-dir / "
            f"data_dir= or set {ENV_VAR} to a folder laid out like ../shared/data")
    path = dataset_path(name, data_dir)
    if family == "shchur":
        if not os.path.exists(path) and name == "cora":
            path = BUNDLED_CORA  # the bundled copy is the same file
        if not os.path.exists(path):
            raise FileNotFoundError(f"load_dataset: {name!r} not found: looked for {path!r} "
                                    f"(or one of {list(SHCHUR[name][1])} next to it)")
        member = SHCHUR[name][0] if path.endswith(".zip") else None
        return _with_split(load_shchur_npz(path, name=name, member=member), seed, lcc)
    if family == "planetoid":
        return load_planetoid(path, PLANETOID[name])
    if family == "heterophilous":
        return load_heterophilous(path, split=split, name=name, seed=seed)
    if family == "tu":
        return load_tu(path, TU[name])
    return load_ppi(path)
