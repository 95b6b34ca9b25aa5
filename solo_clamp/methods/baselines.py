"""solo-learn's own methods that solo-clamp trains beside CLAMP (SimCLR, BYOL, VICReg): their
facts, keyed by class, since their modules are solo-learn's."""

from __future__ import annotations

from dataclasses import dataclass

from solo.methods import BYOL, SimCLR, VICReg

from solo_clamp.methods.facts import MethodFacts, ViewRule, require

_SOLO_RECIPE = ViewRule(minimum=2, maximum=2, why="solo-learn's recipe")


@dataclass
class SimCLRKwargs:
    """solo-learn's SimCLR ``method_kwargs`` (its class reads exactly these)."""

    proj_hidden_dim: int
    proj_output_dim: int
    temperature: float

    def __post_init__(self) -> None:
        for name in ("proj_hidden_dim", "proj_output_dim"):
            value = getattr(self, name)
            require(value >= 1, name, "a positive integer", value)
        require(self.temperature > 0, "temperature", "a number > 0", self.temperature)


BASELINE_FACTS: dict[type, MethodFacts] = {
    SimCLR: MethodFacts(loss_key="train_nce_loss", views=_SOLO_RECIPE, kwargs_schema=SimCLRKwargs),
    BYOL: MethodFacts(loss_key="train_neg_cos_sim", views=_SOLO_RECIPE),
    VICReg: MethodFacts(loss_key="train_vicreg_loss", views=_SOLO_RECIPE),
}
