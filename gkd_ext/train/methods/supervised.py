"""Supervised training of one model on the labels: the baseline of every method, and how
teachers are trained."""
from __future__ import annotations

from ..config import ModelSpec
from ..method import Method, Role, register_method


@register_method
class Supervised(Method):
    name = "supervised"
    summary = "the student alone, trained on the labels"
    models = {"student": ModelSpec()}
    roles = {"student": Role.STUDENT}
    reads_unlabelled = False

    def setup(self, ctx):
        self.task = ctx.task
        return {}

    def step(self, out, batch, learners):
        return {"student": self.task.loss(out["student"].logits, batch)}, {}
