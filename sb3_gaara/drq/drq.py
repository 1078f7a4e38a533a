"""DrQ (Kostrikov, Yarats & Fergus, "Image Augmentation Is All You Need", 2020): SAC from pixels whose critic
trains on randomly shifted images, with its targets and losses averaged over several shifts.

DrQ is the package's pixel SAC with the encoder trained by the critic alone (the ``pixel_sac`` variant, SAC+AE's
architecture: four 32-channel convolutions, a Linear + LayerNorm + tanh head, the actor on the critic's
convolutions detached) and GAARASAC's ``augmentation="shift"``. So :class:`DrQ` is :class:`GAARASAC` with DrQ's
published settings as defaults; the update is GAARASAC's, which already does what DrQ's differs in.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from stable_baselines3.common.type_aliases import GymEnv

from sb3_gaara.gaara.gaara_sac import GAARASAC
from sb3_gaara.gaara.policies import GAARAPolicy

#: DrQ's published settings where they differ from GAARASAC's defaults (SAC+AE's); every other default is shared
DRQ_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "batch_size": 512,
        "encoder_tau": 0.01,  # DrQ soft-updates the whole critic, encoder included, at tau
        "ent_coef_lr": 1e-3,
        "init_gradient_steps": 0,  # no initial burst of updates
        "augmentation": "shift",
        "target_augmentations": 2,
        "q_augmentations": 2,
    }
)


class DrQ(GAARASAC):
    """DrQ: SAC from pixels with random shifts, ``K`` shifted views of the next observation averaged in the
    critic's target and ``M`` of the observation in its loss (DrQ §3, Algorithm 1).

    ``DrQ("CnnPolicy", env)`` trains with the paper's settings (DrQ appendix, PlaNet benchmark; the
    reference configuration): 84 px observations, which DrQ renders at that size and does not crop (give the env
    ``height=84, width=84``: the crop of ``image_size=84`` is then the whole frame), 3 stacked frames, shifts of
    up to 4 pixels, ``K = M = 2``, batch 512, Adam with learning rate 1e-3 for the actor, the critic and the
    temperature (Adam's default betas), initial temperature 0.1, ``tau = 0.01`` for the Q heads *and* the
    encoder (DrQ soft-updates the whole critic), actor and targets every 2 updates, 1000 random steps and then
    one update per agent step (no initial burst of updates), replay of 100k transitions.

    Two choices of DrQ's code that SAC+AE's code (GAARASAC's defaults) makes otherwise are DrQ's defaults here, set
    through :attr:`default_policy_kwargs` (see :class:`~sb3_gaara.GAARAPolicy`): the convolutions start with their
    whole kernel orthogonal (``conv_init="orthogonal"``; SAC+AE: delta-orthogonal, the centre tap only), and the
    log-probability subtracts the exact log-determinant of the tanh squashing (``squash_correction="exact"``;
    SAC+AE and SB3 floor the Jacobian at 1e-6, which lowers the log-probability of saturated actions).
    ``policy_kwargs`` given by the user are merged over them, so ``policy_kwargs=dict(conv_init="delta_orthogonal",
    squash_correction="clamped")`` gives SAC+AE's.

    Where it differs from the reference code:

    * the critic's loss is the *mean* of its ``M`` views' losses, as the paper's Eq. 4 writes it; the code sums
      them, a constant factor that Adam's step hardly tells apart;
    * the actor's mean and log-std are two Linear layers, each initialised orthogonally on its own (SB3's actor);
      the code's last layer is one Linear with both outputs, whose rows all start mutually orthogonal;
    * the critic's loss on one view is SAC+AE's sum of the two heads' MSEs, as in the code;
    * the actor and the temperature read the first shifted view, as in the code.

    Every parameter is :class:`~sb3_gaara.GAARASAC`'s, passed by keyword; only the defaults of :data:`DRQ_DEFAULTS`
    (and ``variant``, ``ent_coef_betas`` and the policy's options above) differ. ``variant`` may name another
    encoder-training variant of :data:`~sb3_gaara.VARIANTS` (e.g. ``"sac_ae"`` for DrQ with SAC+AE's decoder).
    """

    default_variant: ClassVar[str] = "pixel_sac"
    zoo_name: ClassVar[str] = "drq"
    #: DrQ's temperature optimizer is a plain Adam (SAC+AE's uses beta1 0.5)
    ent_coef_betas: ClassVar[tuple[float, float]] = (0.9, 0.999)
    #: DrQ's code's whole-kernel orthogonal convolutions and exact tanh log-determinant; ``policy_kwargs`` override them
    default_policy_kwargs: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {"conv_init": "orthogonal", "squash_correction": "exact"}
    )

    def __init__(self, policy: str | type[GAARAPolicy], env: GymEnv | str | None, **kwargs: Any) -> None:
        kwargs = {**DRQ_DEFAULTS, **kwargs}
        kwargs["policy_kwargs"] = {**self.default_policy_kwargs, **(kwargs.get("policy_kwargs") or {})}
        super().__init__(policy, env, **kwargs)


def _with_defaults(function: Callable[..., Any], defaults: Mapping[str, Any]) -> inspect.Signature:
    """``function``'s signature with ``defaults`` replacing its defaults, every argument after ``env`` keyword-only:
    what ``inspect.signature`` (the RL Zoo's and the study's argument checks, IDEs, the docs) shows for an ``__init__``
    that only changes defaults and passes the rest on."""
    signature = inspect.signature(function)
    unknown = set(defaults) - set(signature.parameters)
    if unknown:
        raise TypeError(f"{function.__qualname__} takes no argument(s) {sorted(unknown)}")
    parameters = []
    for name, parameter in signature.parameters.items():
        if name not in ("self", "policy", "env"):
            parameter = parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name, parameter.default))
        parameters.append(parameter)
    return signature.replace(parameters=parameters)


DrQ.__init__.__signature__ = _with_defaults(GAARASAC.__init__, DRQ_DEFAULTS)  # type: ignore[attr-defined]
