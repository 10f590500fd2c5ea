"""The method protocol: what a training method declares, and the registry of methods by name.

A method is a class registered with :func:`register_method` that declares

- ``Config``: its own config dataclass (fields declared with :func:`~gkd_ext.train.config.option`
  become its command-line options);
- ``models``: its model groups and their default :class:`~gkd_ext.train.config.ModelSpec`
  (``{"teacher": ..., "student": ...}``); :meth:`Method.participants` turns them into named
  slots, each with a :class:`Role`;
- ``schedule``: :data:`JOINT` (every trained slot steps together from one forward pass) or
  :data:`ROUND_ROBIN` (one learner at a time, the other slots frozen, as Alignahead does);
- :meth:`Method.step`: from every participant's outputs on a batch, the loss of each learner
  and the numbers to log.

:func:`gkd_ext.train.fit` does the rest: it builds the models, trains or loads frozen
teachers and caches their outputs, keeps one optimiser per trained slot (with the trainable
loss parts :meth:`Method.setup` returns), evaluates, stops early per slot, checkpoints and
writes one result record. A new method is one new file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Dict, List, NamedTuple, Optional, Sequence, Tuple, Type

import torch
from torch import nn

from .config import ModelSpec, validate

Tensor = torch.Tensor

JOINT = "joint"
ROUND_ROBIN = "round_robin"


class Role(str, Enum):
    """A participant's role: a ``teacher`` is trained beforehand (or loaded) and frozen; a
    ``student`` is trained against frozen teachers; a ``peer`` is trained together with other
    peers, each learning from the others."""
    TEACHER = "teacher"
    STUDENT = "student"
    PEER = "peer"


@dataclass
class Slot:
    """A named participant: its role and its model spec."""
    role: Role
    spec: ModelSpec

    @property
    def trained(self) -> bool:
        return self.role is not Role.TEACHER


class Output(NamedTuple):
    """What a model gives on a batch: logits and the hidden outputs the losses align."""
    logits: Tensor
    hidden: List[Tensor]


@dataclass
class Setup:
    """What :meth:`Method.setup` may read: the task, the trained models, and every
    participant's hidden widths (teachers' included)."""
    task: Any
    models: Dict[str, nn.Module]
    hidden_dims: Dict[str, List[int]]


@dataclass
class NoConfig:
    """A method without options of its own."""


class Method:
    """Base class of the training methods (see the module docstring)."""
    name: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig
    models: ClassVar[Dict[str, ModelSpec]] = {}
    roles: ClassVar[Dict[str, Role]] = {}
    schedule: ClassVar[str] = JOINT
    summary: ClassVar[str] = ""
    # Whether the losses read nodes without labels (distillation terms over every node): a
    # mini-batch task then draws its seeds from every node, else from the training nodes only.
    reads_unlabelled: ClassVar[bool] = True
    # The trained slots form an ensemble (scored from ``combine`` as "ensemble", saved as one
    # model by ``--save-models``).
    ensemble: ClassVar[bool] = False

    def __init__(self, config: Any = None, **models: ModelSpec):
        self.config = validate(config if config is not None else self.Config())
        if not isinstance(self.config, self.Config):
            raise TypeError(f"method {self.name!r}: 'config' must be a {self.Config.__name__}, "
                            f"got {type(config).__name__}")
        unknown = sorted(set(models) - set(type(self).models))
        if unknown:
            raise ValueError(f"method {self.name!r} has no model group(s) {unknown}; its groups "
                             f"are {sorted(type(self).models)}")
        self.specs: Dict[str, ModelSpec] = {
            group: validate(models.get(group) or dataclasses.replace(spec))
            for group, spec in type(self).models.items()}
        self.check()

    def check(self) -> None:
        """Raise ValueError on a config the method cannot run (called at construction)."""

    def participants(self) -> Dict[str, Slot]:
        """Named slots in a fixed order; by default one slot per model group."""
        return {group: Slot(self.roles[group], spec) for group, spec in self.specs.items()}

    def setup(self, ctx: Setup) -> Dict[str, nn.Module]:
        """Build what the losses need; return the trainable loss parts by name: a part named
        after a trained slot joins that slot's optimiser, any other name gets an optimiser of
        its own stepped with every learner; all are checkpointed."""
        return {}

    def uses_peers(self) -> bool:
        """Round-robin only: whether a learner's step reads the other trained slots' outputs
        (when not, they are not computed)."""
        return True

    def step(self, out: Dict[str, Output], batch, learners: Sequence[str]) -> Tuple[Dict[str, Tensor], Dict[str, float]]:
        """The loss of each slot in ``learners`` from the outputs ``out`` of every participant
        on ``batch``, and the numbers to log. Frozen participants' outputs carry no gradient;
        whatever else must not receive gradients is the method's to detach."""
        raise NotImplementedError

    def combine(self, logits: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Predictions made from several slots' logits (e.g. ``{"ensemble": ...}``), scored
        and tracked next to the slots; none by default."""
        return {}

    def diagnostics(self, logits: Dict[str, Tensor]) -> Dict[str, float]:
        """Numbers about the method's own state to log at each evaluation (eval-mode logits of
        every trained slot given); none by default."""
        return {}

    def reported(self) -> List[str]:
        """The slots whose test metric is the method's result (their mean)."""
        return [n for n, s in self.participants().items() if s.trained]

    def describe(self) -> Dict[str, Any]:
        return {"method": self.name, "config": dataclasses.asdict(self.config),
                "models": {g: dataclasses.asdict(s) for g, s in self.specs.items()},
                "schedule": self.schedule}


METHODS: Dict[str, Type[Method]] = {}


def register_method(cls: Type[Method]) -> Type[Method]:
    """Class decorator: make ``cls`` available by ``cls.name`` to :func:`get_method`, the CLI
    and the experiment scripts."""
    if not cls.name:
        raise ValueError(f"register_method: {cls.__name__} has no 'name'")
    if set(cls.models) != set(cls.roles):
        raise ValueError(f"register_method: {cls.__name__}.roles must name a role for every "
                         f"model group {sorted(cls.models)}")
    if cls.schedule not in (JOINT, ROUND_ROBIN):
        raise ValueError(f"register_method: {cls.__name__}.schedule must be {JOINT!r} or "
                         f"{ROUND_ROBIN!r}, got {cls.schedule!r}")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> Type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_names() -> List[str]:
    return sorted(METHODS)


def make_method(name: str, config: Optional[Any] = None, **models: ModelSpec) -> Method:
    """``get_method(name)(config, **models)``."""
    return get_method(name)(config, **models)
