"""solo-learn's own methods that solo-clamp trains beside CLAMP (SimCLR, BYOL, VICReg): their
facts and ``method_kwargs`` schemas, registered with the classes of solo-learn (which are left
unchanged: their modules are solo-learn's).

Each schema holds exactly the ``method_kwargs`` the class reads, with the defaults its
``add_and_assert_specific_cfg`` fills in; a field it reads without a default is required here
(solo-learn's own asserts of those, ``OmegaConf.is_missing(cfg, "method_kwargs.x")``, never
fire: ``is_missing`` takes no dotted key, so without the schema a missing field surfaces as an
attribute error when the class is built). Each loss key is the one its ``training_step`` logs
(``tests/integration/test_registration.py`` runs a step of each).
"""

from __future__ import annotations

from pydantic import Field
from pydantic.dataclasses import dataclass
from solo.methods import BYOL, SimCLR, VICReg

from solo_clamp.methods.facts import MethodFacts, ViewRule
from solo_clamp.methods.registry import register_method
from solo_clamp.validation import CLOSED, Count, Number

_SOLO_RECIPE = ViewRule(minimum=2, maximum=2, why="solo-learn's recipe")
_PROJECTOR = ("proj_hidden_dim", "proj_output_dim")


@dataclass(config=CLOSED)
class SimCLRKwargs:
    """solo-learn's SimCLR ``method_kwargs`` (its class reads exactly these)."""

    proj_hidden_dim: Count
    proj_output_dim: Count
    temperature: Number = Field(gt=0)


@dataclass(config=CLOSED)
class BYOLKwargs:
    """solo-learn's BYOL ``method_kwargs`` (solo/methods/byol.py: all three required)."""

    proj_hidden_dim: Count
    proj_output_dim: Count
    pred_hidden_dim: Count


@dataclass(config=CLOSED)
class VICRegKwargs:
    """solo-learn's VICReg ``method_kwargs`` (solo/methods/vicreg.py: the projector's widths
    required, the loss weights defaulting to 25, 25 and 1)."""

    proj_hidden_dim: Count
    proj_output_dim: Count
    sim_loss_weight: Number = Field(25.0, ge=0)
    var_loss_weight: Number = Field(25.0, ge=0)
    cov_loss_weight: Number = Field(1.0, ge=0)


register_method(
    SimCLR,
    MethodFacts(
        name="simclr",
        loss_key="train_nce_loss",
        views=_SOLO_RECIPE,
        kwargs_schema=SimCLRKwargs,
        projector_width_fields=_PROJECTOR,
    ),
)
register_method(
    BYOL,
    MethodFacts(
        name="byol",
        loss_key="train_neg_cos_sim",
        views=_SOLO_RECIPE,
        kwargs_schema=BYOLKwargs,
        projector_width_fields=(*_PROJECTOR, "pred_hidden_dim"),
    ),
)
register_method(
    VICReg,
    MethodFacts(
        name="vicreg",
        loss_key="train_vicreg_loss",
        views=_SOLO_RECIPE,
        kwargs_schema=VICRegKwargs,
        projector_width_fields=_PROJECTOR,
    ),
)
