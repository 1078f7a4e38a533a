"""rl-zoo3 integration: ``python -m rl_zoo3.train --algo gaara_sac --env dmc-cheetah-run``.

An installed wheel registers everything through an interpreter start-up hook
(:mod:`sb3_gaara.zoo._startup`), which patches rl-zoo3 only when rl-zoo3 is imported. Where that
hook does not run (a source checkout on ``PYTHONPATH``, ``python -S``, ``SB3_GAARA_ZOO_HOOK=0``),
call :func:`register` before importing rl-zoo3's scripts, or run them through this package:
``python -m sb3_gaara.zoo train --algo gaara_sac --env dmc-cheetah-run``.
"""

from sb3_gaara.zoo.patches import ZOO_ALGORITHMS, check_hyperparameter_names, hyperparams_path


def register() -> None:
    """Register the algorithms, hyper-parameters, Optuna samplers and ``dmc-*`` ids with rl-zoo3 in this process."""
    from sb3_gaara.zoo import _startup

    _startup.install()


__all__ = ["ZOO_ALGORITHMS", "check_hyperparameter_names", "hyperparams_path", "register"]
