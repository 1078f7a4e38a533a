"""What sb3-gaara changes in rl-zoo3, module by module.

Each ``patch_*`` function receives an rl-zoo3 module right after it has executed (see
:mod:`sb3_gaara.zoo._startup`) and is idempotent:

- ``rl_zoo3.utils``: the ``dmc-*`` Gymnasium ids are registered (``train`` checks ``--env``
  against the registry), and ``gaara_sac``, ``sac_ae`` and ``curl_sac`` are added to ``ALGOS``,
  the table that ``train``, ``enjoy``, ``record_video`` and the hub scripts validate ``--algo``
  against and instantiate from.
- ``rl_zoo3.hyperparams_opt``: Optuna samplers and converters for ``-optimize``.
- ``rl_zoo3.exp_manager``: ``ExperimentManager`` reads the hyper-parameters of our algorithms from
  the package's ``hyperparams/<algo>.yml`` (rl-zoo3 only looks in its own folder) unless ``-conf``
  names a file, and marks model loads done to resume training (``-i``), see :class:`ZooAlgorithm`.

The same patches can be applied without the start-up hook with :func:`sb3_gaara.zoo.register`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sb3_gaara.envs import register_dmc_envs

if TYPE_CHECKING:
    from sb3_gaara.gaara.gaara_sac import GAARASAC

#: rl-zoo3 ``--algo`` name -> class exported by ``sb3_gaara``.
ZOO_ALGORITHMS: dict[str, str] = {"gaara_sac": "GAARASAC", "sac_ae": "SACAE", "curl_sac": "CURLSAC"}

#: Hyper-parameter files shipped in the package (a copy of the repository's top-level ``hyperparams/``).
HYPERPARAMS_DIR = Path(__file__).resolve().parent.parent / "hyperparams"

# Keyword arguments that define the saved networks; rl-zoo3 drops ``policy``/``policy_kwargs`` when
# it resumes training for the same reason, and ``GAARASAC.load`` refuses these two outright.
_ARCHITECTURE_KEYS = ("image_size", "variant")

_resuming_training: contextvars.ContextVar[bool] = contextvars.ContextVar("sb3_gaara_resuming_training", default=False)


def hyperparams_path(algo: str) -> Path:
    """Path of the shipped hyper-parameter file of an rl-zoo3 algorithm name, e.g. ``gaara_sac``."""
    return HYPERPARAMS_DIR / f"{algo}.yml"


class ZooAlgorithm:
    """Entry of ``rl_zoo3.utils.ALGOS`` for one sb3-gaara algorithm.

    rl-zoo3 calls an entry to build a model and calls its ``load`` to resume training, evaluate
    (``enjoy``) or record a video. ``enjoy`` and ``record_video`` pass ``buffer_size=1`` only for
    the algorithms they know to be off-policy, so a plain class would allocate the saved replay
    buffer (hundreds of thousands of 9x100x100 frames) just to act. This entry makes every load
    an inference load (``buffer_size=1``) unless it happens inside rl-zoo3's resume path
    (``ExperimentManager._load_pretrained_agent``, patched to say so) or the caller passes
    ``buffer_size`` itself. Models built or loaded are plain ``GAARASAC``/``SACAE``/``CURLSAC``
    instances; the class itself is imported when first used.
    """

    def __init__(self, zoo_name: str, class_name: str) -> None:
        self.zoo_name = zoo_name
        self.class_name = class_name
        # push_to_hub names the model card after the class.
        self.__name__ = class_name
        self.__qualname__ = class_name

    @property
    def algorithm_class(self) -> type[GAARASAC]:
        import sb3_gaara

        return getattr(sb3_gaara, self.class_name)

    def __call__(self, *args: Any, **kwargs: Any) -> GAARASAC:
        check_hyperparameter_names(self.zoo_name, self.algorithm_class, kwargs)
        return self.algorithm_class(*args, **kwargs)

    def load(self, path: Any, env: Any = None, **kwargs: Any) -> GAARASAC:
        """The class's ``load``, with a one-transition replay buffer unless training resumes."""
        if not _resuming_training.get():
            kwargs.setdefault("buffer_size", 1)
        return self.algorithm_class.load(path, env=env, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.algorithm_class, name)

    def __repr__(self) -> str:
        return f"ZooAlgorithm({self.zoo_name!r} -> sb3_gaara.{self.class_name})"


#: keys that rl-zoo3 reads from a yml entry itself and never passes to the algorithm
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
)


def check_hyperparameter_names(zoo_name: str, algorithm_class: type, kwargs: dict[str, Any]) -> None:
    """Refuse keys of a zoo yml (or ``--hyperparams``) that the algorithm does not take, before anything trains.

    Without this, a typo such as ``encoder_taus`` surfaces as Python's bare ``TypeError`` from the
    constructor; here the message names the key, the closest valid name and where to fix it.
    """
    import difflib

    valid = [name for name in inspect.signature(algorithm_class).parameters if name != "_init_setup_model"]
    unknown = [key for key in kwargs if key not in valid]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, [*valid, *_ZOO_KEYS], n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(
        f"Unknown hyper-parameter(s) for --algo {zoo_name}: {', '.join(hints)}. Fix the entry in the yml file "
        f"(default: {hyperparams_path(zoo_name)}) or the --hyperparams option. {algorithm_class.__name__} takes: "
        f"{', '.join(sorted(valid))}; rl-zoo3 itself reads: {', '.join(_ZOO_KEYS)}."
    )


def patch_utils(utils: ModuleType) -> None:
    """Register the ``dmc-*`` environments and add the algorithms to ``utils.ALGOS`` (the dict, in place)."""
    register_dmc_envs()
    for zoo_name, class_name in ZOO_ALGORITHMS.items():
        utils.ALGOS.setdefault(zoo_name, ZooAlgorithm(zoo_name, class_name))


def patch_hyperparams_opt(hyperparams_opt: ModuleType) -> None:
    """Add the Optuna samplers and converters of :mod:`sb3_gaara.zoo.hyperparams_opt`."""
    from sb3_gaara.zoo import hyperparams_opt as ours

    for zoo_name in ZOO_ALGORITHMS:
        hyperparams_opt.HYPERPARAMS_SAMPLER.setdefault(zoo_name, ours.HYPERPARAMS_SAMPLER[zoo_name])
        hyperparams_opt.HYPERPARAMS_CONVERTER.setdefault(zoo_name, ours.HYPERPARAMS_CONVERTER[zoo_name])


def patch_exp_manager(exp_manager: ModuleType) -> None:
    """Point ``ExperimentManager`` at the shipped hyper-parameters and mark its resume-training loads."""
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

    original_load = manager_class._load_pretrained_agent

    @functools.wraps(original_load)
    def _load_pretrained_agent(self: Any, hyperparams: dict[str, Any], env: Any) -> Any:
        if self.algo not in ZOO_ALGORITHMS:
            return original_load(self, hyperparams, env)
        for key in _ARCHITECTURE_KEYS:
            if key in hyperparams:
                warnings.warn(
                    f"Ignoring {key}={hyperparams.pop(key)!r} when resuming training: the saved model keeps its own {key}.",
                    stacklevel=2,
                )
        token = _resuming_training.set(True)
        try:
            return original_load(self, hyperparams, env)
        finally:
            _resuming_training.reset(token)

    manager_class.__init__ = __init__
    manager_class._load_pretrained_agent = _load_pretrained_agent
    manager_class._sb3_gaara_patched = True
