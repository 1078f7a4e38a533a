"""What sb3-gaara changes in rl-zoo3, module by module.

Each ``patch_*`` function receives an rl-zoo3 module right after it has executed (see
:mod:`sb3_gaara.zoo._startup`) and is idempotent:

- ``rl_zoo3.utils``: the ``dmc-*`` Gymnasium ids are registered (``train`` checks ``--env``
  against the registry), and the algorithms of :data:`sb3_gaara.gaara.gaara_sac.ALGORITHMS` are added
  to ``ALGOS`` under their ``zoo_name`` (``gaara_sac``, ``sac_ae``, ``curl_sac``), as the plain classes:
  ``train``, ``enjoy``, ``record_video`` and the hub scripts validate ``--algo`` against that table and
  build or load models from it.
- ``rl_zoo3.hyperparams_opt``: Optuna samplers and converters for ``-optimize``.
- ``rl_zoo3.exp_manager``: ``ExperimentManager`` reads the hyper-parameters of our algorithms from
  the package's ``hyperparams/<algo>.yml`` (rl-zoo3 only looks in its own folder) unless ``-conf``
  names a file, checks their names before it builds or loads a model, and drops ``image_size`` and
  ``variant`` with a warning when it resumes training (``-i``).

``enjoy`` and ``record_video`` pass ``buffer_size=1`` only to the algorithms they know to be off-policy,
so they load our models with the saved buffer size. That costs next to nothing: the replay buffer allocates
its frame store at the first ``add()``, and its other arrays take about 60 bytes per transition (6 MB and
under a millisecond for 100k transitions, measured on a saved 9x100x100 model). An earlier version wrapped
each class to force ``buffer_size=1``; the plain classes are simpler and are what ``push_to_hub`` names.

The same patches can be applied without the start-up hook with :func:`sb3_gaara.zoo.register`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings
from collections.abc import Collection
from pathlib import Path
from types import ModuleType
from typing import Any

from sb3_gaara.envs import register_dmc_envs
from sb3_gaara.gaara.gaara_sac import ALGORITHMS, GAARASAC

#: rl-zoo3 ``--algo`` name -> algorithm class, derived from the library's list of algorithms.
ZOO_ALGORITHMS: dict[str, type[GAARASAC]] = {algorithm.zoo_name: algorithm for algorithm in ALGORITHMS}

#: Hyper-parameter files shipped in the package (the repository's top-level ``hyperparams`` links here).
HYPERPARAMS_DIR = Path(__file__).resolve().parent.parent / "hyperparams"

# Keyword arguments that define the saved networks; rl-zoo3 drops ``policy``/``policy_kwargs`` when
# it resumes training for the same reason, and ``GAARASAC.load`` refuses these two outright.
_ARCHITECTURE_KEYS = ("image_size", "variant")

#: keys of a yml entry that rl-zoo3 reads itself and never passes to the algorithm (offered as did-you-mean hints)
_ZOO_KEYS = (
    "n_timesteps",
    "policy",
    "n_envs",
    "frame_stack",
    "normalize",
    "env_wrapper",
    "vec_env_wrapper",
    "callback",
    "normalize_kwargs",
    "env_kwargs",
    "monitor_kwargs",
    "noise_type",
    "noise_std",
)


def hyperparams_path(algo: str) -> Path:
    """Path of the shipped hyper-parameter file of an rl-zoo3 algorithm name, e.g. ``gaara_sac``."""
    return HYPERPARAMS_DIR / f"{algo}.yml"


def check_hyperparameter_names(
    zoo_name: str,
    algorithm_class: type,
    kwargs: dict[str, Any],
    config: str | None = None,
    command_line_keys: Collection[str] = (),
) -> None:
    """Refuse keys of a zoo yml (or ``--hyperparams``) that the algorithm does not take, before a model is built.

    Without this, a typo such as ``encoder_taus`` surfaces as Python's bare ``TypeError`` from the
    constructor (or, when resuming with ``-i``, is silently set on the loaded model); here the message
    names the key, the closest valid name and where to fix it.

    :param config: the hyper-parameter file read (default: the shipped one of ``zoo_name``)
    :param command_line_keys: keys given with ``--hyperparams``, reported as such
    """
    valid = [name for name in inspect.signature(algorithm_class).parameters if name != "_init_setup_model"]
    unknown = [key for key in kwargs if key not in valid]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, [*valid, *_ZOO_KEYS], n=1)
        hint = f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        hints.append(hint + (" from --hyperparams" if key in command_line_keys else ""))
    raise ValueError(
        f"Unknown hyper-parameter(s) for --algo {zoo_name}: {', '.join(hints)}. Fix the entry in "
        f"{config or hyperparams_path(zoo_name)} or the --hyperparams option. {algorithm_class.__name__} takes: "
        f"{', '.join(sorted(valid))}; rl-zoo3 itself reads: {', '.join(_ZOO_KEYS)}."
    )


def patch_utils(utils: ModuleType) -> None:
    """Register the ``dmc-*`` environments and add the algorithms to ``utils.ALGOS`` (the dict, in place)."""
    register_dmc_envs()
    for zoo_name, algorithm in ZOO_ALGORITHMS.items():
        utils.ALGOS.setdefault(zoo_name, algorithm)


def patch_hyperparams_opt(hyperparams_opt: ModuleType) -> None:
    """Add the Optuna samplers and converters of :mod:`sb3_gaara.zoo.hyperparams_opt`."""
    from sb3_gaara.zoo import hyperparams_opt as ours

    for zoo_name in ZOO_ALGORITHMS:
        hyperparams_opt.HYPERPARAMS_SAMPLER.setdefault(zoo_name, ours.HYPERPARAMS_SAMPLER[zoo_name])
        hyperparams_opt.HYPERPARAMS_CONVERTER.setdefault(zoo_name, ours.HYPERPARAMS_CONVERTER[zoo_name])


def patch_exp_manager(exp_manager: ModuleType) -> None:
    """Point ``ExperimentManager`` at the shipped hyper-parameters, check their names, and clean resume loads.

    The names are checked on the dict that ``_preprocess_action_noise`` returns: in rl-zoo3 2.9 that is
    ``setup_experiment``'s final ``self._hyperparams``, which it passes whole to the constructor (training,
    and every ``-optimize`` trial, with the sampled values added) or to ``load`` (``-i``), right after.
    """
    manager_class = exp_manager.ExperimentManager
    if getattr(manager_class, "_sb3_gaara_patched", False):
        return

    original_init = manager_class.__init__
    init_signature = inspect.signature(original_init)

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = init_signature.bind(self, *args, **kwargs)
        algo = bound.arguments.get("algo")
        if algo in ZOO_ALGORITHMS and not bound.arguments.get("config"):
            bound.arguments["config"] = str(hyperparams_path(algo))
        original_init(*bound.args, **bound.kwargs)

    original_preprocess_action_noise = manager_class._preprocess_action_noise

    @functools.wraps(original_preprocess_action_noise)
    def _preprocess_action_noise(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        hyperparams = original_preprocess_action_noise(self, *args, **kwargs)
        if self.algo in ZOO_ALGORITHMS:
            check_hyperparameter_names(
                self.algo, ZOO_ALGORITHMS[self.algo], hyperparams, self.config, set(self.custom_hyperparams or ())
            )
        return hyperparams

    original_load = manager_class._load_pretrained_agent

    @functools.wraps(original_load)
    def _load_pretrained_agent(self: Any, hyperparams: dict[str, Any], env: Any) -> Any:
        if self.algo in ZOO_ALGORITHMS:
            for key in _ARCHITECTURE_KEYS:
                if key in hyperparams:
                    warnings.warn(
                        f"Ignoring {key}={hyperparams.pop(key)!r} when resuming training: "
                        f"the saved model keeps its own {key}.",
                        stacklevel=2,
                    )
        return original_load(self, hyperparams, env)

    manager_class.__init__ = __init__
    manager_class._preprocess_action_noise = _preprocess_action_noise
    manager_class._load_pretrained_agent = _load_pretrained_agent
    manager_class._sb3_gaara_patched = True
