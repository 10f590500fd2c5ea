"""Reference trainers: supervised, offline KD and Alignahead."""
from .common import accuracy, micro_f1, set_seed  # noqa: F401
from .offline import train_model  # noqa: F401,E402
