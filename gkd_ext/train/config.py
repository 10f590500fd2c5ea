"""Configuration dataclasses and the one place that turns them into command-line options.

Every option of `python -m gkd_ext train` is a field of a dataclass: the model specs, the
optimiser settings, the run settings and each method's own config. A field declared with
:func:`option` carries its help text and its valid range; :func:`add_options` makes argparse
options of a dataclass (validated at parse time, so a bad value never reaches training) and
:func:`from_options` reads the parsed values back into an instance. ``None`` always means "use
the default", never ``0``.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from torch import nn


def option(default: Any = dataclasses.MISSING, *, help: str, min: Optional[float] = None,
           max: Optional[float] = None, above: Optional[float] = None,
           choices: Optional[Tuple[str, ...]] = None, parse: Optional[Callable[[str], Any]] = None,
           flag: Optional[str] = None, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with what the command line needs: ``help``, a closed range
    ``[min, max]`` or an open lower bound ``above`` for numbers, ``choices`` for strings, a
    ``parse`` function for structured values, and an optional ``flag`` name (default: the field
    name with dashes)."""
    meta = {"help": help, "min": min, "max": max, "above": above, "choices": choices,
            "parse": parse, "flag": flag}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def bound_error(value: Any, meta: Dict[str, Any]) -> Optional[str]:
    """What is wrong with ``value`` under the field's declared range, or None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if meta.get("min") is not None and value < meta["min"]:
            return f"must be >= {meta['min']:g}, got {value:g}"
        if meta.get("max") is not None and value > meta["max"]:
            return f"must be <= {meta['max']:g}, got {value:g}"
        if meta.get("above") is not None and not value > meta["above"]:
            return f"must be > {meta['above']:g}, got {value:g}"
    if meta.get("choices") and isinstance(value, str) and value not in meta["choices"]:
        return f"must be one of {list(meta['choices'])}, got {value!r}"
    return None


def check_value(name: str, value: Any, meta: Dict[str, Any]) -> None:
    """Raise ValueError naming ``name`` when ``value`` breaks the field's declared range."""
    problem = bound_error(value, meta)
    if problem:
        raise ValueError(f"{name} {problem}")


def validate(obj: Any) -> Any:
    """Check every declared range of a dataclass instance (for configs built in Python)."""
    for f in dataclasses.fields(obj):
        check_value(f"{type(obj).__name__}.{f.name}", getattr(obj, f.name), dict(f.metadata))
    return obj


def _base_type(tp) -> type:
    """``Optional[X]`` -> X; other annotations unchanged."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _flag(f: dataclasses.Field, prefix: str) -> str:
    name = f.metadata.get("flag")
    if name == "":   # the field is the group's main value: --teacher gat
        return f"--{prefix.rstrip('-')}"
    return f"--{prefix}{name or f.name.replace('_', '-')}"


def add_options(parser: argparse._ActionsContainer, cls: type, prefix: str = "",
                defaults: Optional[Any] = None, title: Optional[str] = None) -> None:
    """Add one option per field of dataclass ``cls`` declared with :func:`option`.

    ``prefix`` is put in front of every flag (``teacher-`` gives ``--teacher-lr``); ``defaults``
    is an instance whose values are shown and used as the defaults (else the field defaults).
    """
    group = parser.add_argument_group(title) if title else parser
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        meta = dict(f.metadata)
        flag = _flag(f, prefix)
        dest = (prefix + f.name).replace("-", "_")
        default = getattr(defaults, f.name) if defaults is not None else (
            f.default if f.default is not dataclasses.MISSING else f.default_factory())
        tp = _base_type(hints[f.name])
        if tp is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction,
                               default=default, help=meta["help"])
            continue
        convert = meta["parse"] or tp

        def typed(text: str, _convert=convert, _flag=flag, _meta=meta):
            try:
                value = _convert(text)
            except (TypeError, ValueError) as exc:
                raise argparse.ArgumentTypeError(f"expected {getattr(_convert, '__name__', 'a value')}"
                                                 f", got {text!r} ({exc})") from None
            problem = bound_error(value, _meta)
            if problem:
                raise argparse.ArgumentTypeError(problem)
            return value
        typed.__name__ = getattr(convert, "__name__", "value")
        shown = "default" if default is None else repr(default)
        group.add_argument(flag, dest=dest, type=typed, default=default,
                           choices=None, metavar=meta["choices"] and "{" + ",".join(meta["choices"]) + "}",
                           help=f"{meta['help']} ({shown})")


def from_options(cls: type, ns: argparse.Namespace, prefix: str = "", **overrides) -> Any:
    """An instance of ``cls`` from the values :func:`add_options` parsed into ``ns``."""
    values = {}
    for f in dataclasses.fields(cls):
        dest = (prefix + f.name).replace("-", "_")
        if "help" in f.metadata and hasattr(ns, dest):
            values[f.name] = getattr(ns, dest)
    values.update(overrides)
    return cls(**values)


# ------------------------------------------------------------------ the shared configs
def parse_options(text: str) -> Dict[str, Any]:
    """``"residual=true,attn_dropout=0.2"`` -> ``{"residual": True, "attn_dropout": 0.2}``."""
    out: Dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise ValueError(f"expected key=value pairs, got {item!r}")
        key, raw = (s.strip() for s in item.split("=", 1))
        low = raw.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        else:
            try:
                out[key] = int(raw)
            except ValueError:
                try:
                    out[key] = float(raw)
                except ValueError:
                    out[key] = raw
    return out


@dataclass
class ModelSpec:
    """One participant's architecture: a model name of :func:`gkd_ext.nn.build_model`, its
    common sizes, and ``options``: keyword arguments only that architecture takes (e.g.
    ``{"residual": True}`` for GAT, ``{"aggr": "pool"}`` for GraphSAGE)."""
    arch: str = option("gcn", help="architecture (gcn, gat, sage, sage-pool, gin, mlp, spatufg, "
                       "fmlp-o, fmlp-s)", flag="")
    hidden: int = option(64, help="hidden width (per attention head for GAT)", min=1)
    layers: int = option(2, help="number of layers", min=1)
    heads: int = option(1, help="attention heads of the hidden layers (GAT only)", min=1)
    dropout: float = option(0.5, help="dropout on every layer's input", min=0.0, max=1.0)
    options: Dict[str, Any] = option(help="architecture-specific options, key=value,...",
                                     parse=parse_options, default_factory=dict)

    def build(self, in_dim: int, out_dim: int) -> nn.Module:
        from ..nn import build_model
        validate(self)
        return build_model(self.arch, in_dim, self.hidden, out_dim, num_layers=self.layers,
                           heads=self.heads, dropout=self.dropout, **self.options)


@dataclass
class OptimConfig:
    """Adam and the stopping rule of one trained model: training runs until the validation
    metric has not improved for ``patience`` epochs; ``epochs`` is only a safety cap."""
    lr: float = option(0.01, help="Adam learning rate", above=0.0)
    weight_decay: float = option(5e-4, help="Adam weight decay (L2)", min=0.0)
    patience: int = option(100, help="stop after this many epochs without a better validation "
                                     "metric", min=1)
    epochs: int = option(1000, help="the most epochs a run may take", min=1)
