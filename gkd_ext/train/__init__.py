"""Reference trainers."""
from .supervised import accuracy, set_seed, train_node_classifier  # noqa: F401
