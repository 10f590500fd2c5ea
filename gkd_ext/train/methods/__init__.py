"""The built-in methods, one module each; importing this package registers them."""
from . import alignahead, frameless, gml, offline, supervised  # noqa: F401
