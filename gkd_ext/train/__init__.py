"""Reference trainers: supervised, offline KD and Alignahead."""
from .common import accuracy, micro_f1, set_seed  # noqa: F401
from .supervised import train_node_classifier  # noqa: F401
