"""Dreamer (Hafner et al. 2020): PlaNet's recurrent state-space model, behaviour learned by latent imagination, and
planning over the learned model (PlaNet's CEM and Dreamer's model-predictive control)."""

from sb3_gaara.common.saving import DurableSaves
from sb3_gaara.dreamer.dreamer import Dreamer, evaluate_planners
from sb3_gaara.dreamer.planning import cem_plan, lambda_returns
from sb3_gaara.dreamer.policies import PLANNER_DEFAULTS, PLANNERS, ActionModel, DreamerPolicy, DreamerState
from sb3_gaara.dreamer.world_model import RSSM, RSSMState, WorldModel, model_loss

#: The algorithms of the family, each registered in the RL Zoo under its ``zoo_name``.
ALGORITHMS: tuple[type[DurableSaves], ...] = (Dreamer,)

__all__ = [
    "ALGORITHMS",
    "PLANNERS",
    "PLANNER_DEFAULTS",
    "RSSM",
    "ActionModel",
    "Dreamer",
    "DreamerPolicy",
    "DreamerState",
    "RSSMState",
    "WorldModel",
    "cem_plan",
    "evaluate_planners",
    "lambda_returns",
    "model_loss",
]
