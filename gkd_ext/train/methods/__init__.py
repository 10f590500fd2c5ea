"""The built-in methods, one module each; importing this package registers them."""
from . import alignahead, gml, offline, supervised  # noqa: F401
