"""Optuna search spaces for ``python -m rl_zoo3.train --algo gaara_sac -optimize``.

rl-zoo3 calls a sampler as ``sampler(trial, n_actions, n_envs, additional_args)`` and expects
constructor keyword arguments back; to rebuild a trial's model later (``--storage ... --trial-id``)
it passes the trial's raw parameters to the matching converter. Each sampler here therefore
suggests raw parameters and returns ``convert_gaara_params`` of them, so both paths agree.

Each algorithm searches the SAC knobs that matter from pixels (learning rates, batch size, the
target rates of the Q heads and of the encoder, the actor's update cadence) plus the knobs of its
own auxiliary losses; the discount (0.99) and the temperature's initial value stay the paper's.
Ranges bracket the paper's settings (appendix A.1) by about an order of magnitude.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

#: What each rl-zoo3 algorithm name trains its encoder with.
RECONSTRUCTION_ALGOS = frozenset({"gaara_sac", "sac_ae"})
COMPARISON_ALGOS = frozenset({"gaara_sac", "curl_sac"})


def _suggest(trial: optuna.Trial, algo: str) -> dict[str, Any]:
    """Suggest the raw parameters of ``algo`` (names as stored in the study)."""
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        # 2**5 = 32 ... 2**8 = 256 (paper: 128).
        "batch_size_pow": trial.suggest_int("batch_size_pow", 5, 8),
        "tau": trial.suggest_float("tau", 0.002, 0.05, log=True),
        "encoder_tau": trial.suggest_float("encoder_tau", 0.01, 0.2, log=True),
        "actor_update_freq": trial.suggest_categorical("actor_update_freq", [1, 2]),
        "encoder_lr": trial.suggest_float("encoder_lr", 1e-4, 3e-3, log=True),
    }
    if algo in RECONSTRUCTION_ALGOS:
        params["decoder_lr"] = trial.suggest_float("decoder_lr", 1e-4, 3e-3, log=True)
        params["decoder_latent_lambda"] = trial.suggest_float("decoder_latent_lambda", 1e-7, 1e-5, log=True)
        params["decoder_weight_lambda"] = trial.suggest_float("decoder_weight_lambda", 1e-8, 1e-6, log=True)
    if algo in COMPARISON_ALGOS:
        params["comparison_lr"] = trial.suggest_float("comparison_lr", 1e-4, 3e-3, log=True)
    if algo == "gaara_sac":
        # The annealed weight c of the comparison loss: start, floor (as a fraction of the start, so
        # that every draw satisfies floor <= start) and decrement per comparison step.
        params["comparison_lambda"] = trial.suggest_float("comparison_lambda", 0.1, 2.0, log=True)
        params["comparison_lambda_min_ratio"] = trial.suggest_float("comparison_lambda_min_ratio", 0.0, 1.0)
        params["comparison_lambda_decay"] = trial.suggest_float("comparison_lambda_decay", 1e-7, 1e-5, log=True)
    return params


def convert_gaara_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Turn raw trial parameters into constructor keyword arguments (the inverse of the encodings above)."""
    hyperparams = dict(sampled_params)
    if "batch_size_pow" in hyperparams:
        hyperparams["batch_size"] = 2 ** hyperparams.pop("batch_size_pow")
    if "comparison_lambda_min_ratio" in hyperparams:
        ratio = hyperparams.pop("comparison_lambda_min_ratio")
        hyperparams["comparison_lambda_min"] = ratio * hyperparams["comparison_lambda"]
    return hyperparams


def _make_sampler(algo: str) -> Callable[[optuna.Trial, int, int, dict], dict[str, Any]]:
    def sample(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
        hyperparams = convert_gaara_params(_suggest(trial, algo))
        # Shown in the study's report next to the raw parameters.
        for key in ("batch_size", "comparison_lambda_min"):
            if key in hyperparams:
                trial.set_user_attr(key, hyperparams[key])
        return hyperparams

    sample.__name__ = f"sample_{algo}_params"
    sample.__doc__ = f"rl-zoo3 sampler of the {algo} search space (see :mod:`sb3_gaara.zoo.hyperparams_opt`)."
    return sample


sample_gaara_sac_params = _make_sampler("gaara_sac")
sample_sac_ae_params = _make_sampler("sac_ae")
sample_curl_sac_params = _make_sampler("curl_sac")

#: Entries added to ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER``.
HYPERPARAMS_SAMPLER: dict[str, Callable[[optuna.Trial, int, int, dict], dict[str, Any]]] = {
    "gaara_sac": sample_gaara_sac_params,
    "sac_ae": sample_sac_ae_params,
    "curl_sac": sample_curl_sac_params,
}
HYPERPARAMS_CONVERTER: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = dict.fromkeys(
    HYPERPARAMS_SAMPLER, convert_gaara_params
)
