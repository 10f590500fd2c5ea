"""Training: methods on one `fit` loop, tasks, metrics, and the experiment runner.

    from gkd_ext.train import fit, make_method, build_tasks, DataConfig, ModelSpec, OptimConfig
    method = make_method("lsp", student=ModelSpec("gcn", hidden=64))
    (name, task), = build_tasks(DataConfig("cora"), seed=0)
    fitted = fit(method, task, OptimConfig(), seed=0)
    fitted.record["slots"]["student"]["test"]
"""
from .common import set_seed  # noqa: F401
from .config import ModelSpec, OptimConfig, option  # noqa: F401
from .fit import Fitted, Tracker, fit, obtain_teacher  # noqa: F401
from .method import (JOINT, METHODS, ROUND_ROBIN, Method, Output, Role, Setup, Slot,  # noqa: F401
                     get_method, make_method, method_names, register_method)
from . import methods  # noqa: F401,E402  (registers the built-in methods; after .method)
from .metrics import METRICS, accuracy, get_metric, micro_f1, roc_auc  # noqa: F401
from .tasks import (Batch, DataConfig, GraphTask, InductiveNodeTask, NodeTask, Split, Task,  # noqa: F401
                    build_tasks, inductive_holdout, observed_subgraph)
