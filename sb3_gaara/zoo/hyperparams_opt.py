"""Optuna search spaces for ``python -m rl_zoo3.train --algo gaara_sac -optimize`` (and each other ``--algo``).

rl-zoo3 calls a sampler as ``sampler(trial, n_actions, n_envs, additional_args)`` and expects
constructor keyword arguments back; to rebuild a trial's model later (``--storage ... --trial-id``)
it passes the trial's raw parameters to the matching converter. Each sampler here therefore
suggests raw parameters and returns ``convert_gaara_params`` of them, so both paths agree.

Each algorithm searches the SAC knobs that matter from pixels (learning rates, batch size, the
target rates of the Q heads and of the encoder, the actor's update cadence) plus the knobs of its
own auxiliary losses; the discount (0.99) and the temperature's initial value stay the paper's.
Ranges bracket the paper's settings (appendix A.1) by about an order of magnitude.

Which auxiliary knobs an algorithm searches follows from its default variant
(:data:`sb3_gaara.gaara.variants.VARIANTS`), see :class:`SearchSpace`; there is one sampler per
SAC-based algorithm, under its ``zoo_name``. DrQ trains the encoder by the critic alone (its variant has neither
decoder nor ``W``), so its space is the SAC knobs. DrQv2 (DDPG) has a space of its own,
:func:`sample_drqv2_params`, and so has SLAC (SAC on the latents of a sequential latent variable model, trained by
its own optimizer), :func:`sample_slac_params`, and Dreamer (a world model, an actor and a value, each with its own
optimizer, the behaviour learned on imagined trajectories), :func:`sample_dreamer_params`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from sb3_gaara.dreamer.dreamer import Dreamer
from sb3_gaara.drq.drq import DrQ
from sb3_gaara.drq.drqv2 import DrQv2
from sb3_gaara.gaara.gaara_sac import ALGORITHMS as GAARA_ALGORITHMS
from sb3_gaara.gaara.gaara_sac import GAARASAC
from sb3_gaara.gaara.variants import VARIANTS
from sb3_gaara.slac.slac import SLAC

#: the SAC-based algorithms, which share the GAARA search space (DrQ's variant has no auxiliary knobs)
GAARA_SAC_ALGORITHMS: tuple[type[GAARASAC], ...] = (*GAARA_ALGORITHMS, DrQ)


@dataclass(frozen=True)
class SearchSpace:
    """Which groups of auxiliary knobs a sampler suggests, on top of the SAC knobs every algorithm searches.

    :param decoder: ``decoder_lr`` and the decoder's two penalties (the variant has the decoder)
    :param comparison: ``comparison_lr`` (the variant has the comparison module ``W``)
    :param annealing: the annealed comparison weight ``c``: start, floor, decay per step
    """

    decoder: bool
    comparison: bool
    annealing: bool

    @classmethod
    def of(cls, algorithm: type[GAARASAC]) -> SearchSpace:
        """The search space of an algorithm, from the variant it trains by default.

        ``c`` is searched where it weighs the comparison step against the reconstruction, i.e. for a variant
        that anneals and has both the decoder and ``W`` (SAC+GAARA). The contrastive-only baseline anneals
        ``c`` too, but has no reconstruction to trade it off against: it keeps the paper's schedule, and
        its search space stays what it has always been (``tests/test_zoo.py`` pins each algorithm's).
        """
        variant = VARIANTS[algorithm.default_variant]
        return cls(
            decoder=variant.use_decoder,
            comparison=variant.use_comparison,
            annealing=variant.anneals and variant.use_comparison and variant.use_decoder,
        )


def _suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Suggest the raw parameters of ``space`` (names as stored in the study)."""
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        # 2**5 = 32 ... 2**8 = 256 (paper: 128).
        "batch_size_pow": trial.suggest_int("batch_size_pow", 5, 8),
        "tau": trial.suggest_float("tau", 0.002, 0.05, log=True),
        "encoder_tau": trial.suggest_float("encoder_tau", 0.01, 0.2, log=True),
        "actor_update_freq": trial.suggest_categorical("actor_update_freq", [1, 2]),
        "encoder_lr": trial.suggest_float("encoder_lr", 1e-4, 3e-3, log=True),
    }
    if space.decoder:
        params["decoder_lr"] = trial.suggest_float("decoder_lr", 1e-4, 3e-3, log=True)
        params["decoder_latent_lambda"] = trial.suggest_float("decoder_latent_lambda", 1e-7, 1e-5, log=True)
        params["decoder_weight_lambda"] = trial.suggest_float("decoder_weight_lambda", 1e-8, 1e-6, log=True)
    if space.comparison:
        params["comparison_lr"] = trial.suggest_float("comparison_lr", 1e-4, 3e-3, log=True)
    if space.annealing:
        # The annealed weight c of the comparison loss: start, floor (as a fraction of the start, so
        # that every draw satisfies floor <= start) and decrement per comparison step.
        params["comparison_lambda"] = trial.suggest_float("comparison_lambda", 0.1, 2.0, log=True)
        params["comparison_lambda_min_ratio"] = trial.suggest_float("comparison_lambda_min_ratio", 0.0, 1.0)
        params["comparison_lambda_decay"] = trial.suggest_float("comparison_lambda_decay", 1e-7, 1e-5, log=True)
    return params


def convert_batch_size_pow(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Raw trial parameters to constructor keyword arguments: ``batch_size_pow`` becomes ``batch_size = 2 **
    batch_size_pow``, the rest stay as they are (the GAARA, DrQv2 and SLAC spaces draw the batch size as a power of 2)."""
    hyperparams = dict(sampled_params)
    if "batch_size_pow" in hyperparams:
        hyperparams["batch_size"] = 2 ** hyperparams.pop("batch_size_pow")
    return hyperparams


def convert_gaara_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Turn raw trial parameters into constructor keyword arguments (the inverse of the encodings above)."""
    hyperparams = convert_batch_size_pow(sampled_params)
    if "comparison_lambda_min_ratio" in hyperparams:
        ratio = hyperparams.pop("comparison_lambda_min_ratio")
        hyperparams["comparison_lambda_min"] = ratio * hyperparams["comparison_lambda"]
    return hyperparams


def _make_sampler(algorithm: type[GAARASAC]) -> Callable[[optuna.Trial, int, int, dict], dict[str, Any]]:
    space = SearchSpace.of(algorithm)

    def sample(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
        hyperparams = convert_gaara_params(_suggest(trial, space))
        # Shown in the study's report next to the raw parameters.
        for key in ("batch_size", "comparison_lambda_min"):
            if key in hyperparams:
                trial.set_user_attr(key, hyperparams[key])
        return hyperparams

    sample.__name__ = f"sample_{algorithm.zoo_name}_params"
    sample.__doc__ = (
        f"rl-zoo3 sampler of the {algorithm.zoo_name} search space, {space} (see :mod:`sb3_gaara.zoo.hyperparams_opt`)."
    )
    return sample


def sample_drqv2_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo3 sampler of DrQv2: the DDPG knobs DrQ-v2 tunes per task (learning rate, batch size, n-step horizon,
    target rate) and the exploration schedule (its end and its length in environment steps); the AD(a, d) switches
    stay as the model or the yml sets them. Ranges bracket DrQ-v2's settings (lr 1e-4, batch 256, n 3, tau 0.01,
    std 1.0 -> 0.1 over 500k)."""
    hyperparams = convert_drqv2_params(_suggest_drqv2(trial))
    trial.set_user_attr("batch_size", hyperparams["batch_size"])
    return hyperparams


def _suggest_drqv2(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 3e-5, 1e-3, log=True),
        # 2**6 = 64 ... 2**9 = 512 (DrQ-v2: 256; 512 for walker)
        "batch_size_pow": trial.suggest_int("batch_size_pow", 6, 9),
        "n_steps": trial.suggest_categorical("n_steps", [1, 3, 5]),
        "tau": trial.suggest_float("tau", 0.002, 0.05, log=True),
        "stddev_end": trial.suggest_float("stddev_end", 0.05, 0.3, log=True),
        "stddev_schedule_steps": trial.suggest_categorical("stddev_schedule_steps", [100_000, 500_000, 1_000_000]),
    }


#: Raw DrQv2 trial parameters to constructor keyword arguments (its space has no other encoding)
convert_drqv2_params = convert_batch_size_pow


def sample_slac_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo3 sampler of SLAC: the SAC knobs on the latents (learning rate of the actor, the critic and the
    temperature, batch of sequences, target rate), the latent model's learning rate and batch of sequences, and the
    sequence length (observations per replayed sequence, also the frames of the actor's history). Log-uniform ranges
    are centred on the paper's values (appendix B: lr 3e-4, model lr 1e-4, tau 0.005) and span about 3x on either
    side for the learning rates and 5x for tau; the batches bracket its 256 and 32 sequences by a factor of 2 or 4,
    the sequence length its 8 by 4.

    The discount (0.99), the temperature (learned, towards an entropy of ``-action_dim``), the latent sizes (as
    ``policy_kwargs`` set them), the random steps and the model's pretraining updates stay as the yml or
    ``--hyperparams`` set them: the last two decide a trial's cost more than its outcome. A longer sequence costs
    proportionally more per update and needs episodes of at least ``sequence_length - 1`` agent steps."""
    hyperparams = convert_slac_params(_suggest_slac(trial))
    trial.set_user_attr("batch_size", hyperparams["batch_size"])
    return hyperparams


def _suggest_slac(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-3, log=True),
        "model_learning_rate": trial.suggest_float("model_learning_rate", 3e-5, 3e-4, log=True),
        # 2**6 = 64 ... 2**9 = 512 sequences (SLAC: 256)
        "batch_size_pow": trial.suggest_int("batch_size_pow", 6, 9),
        "model_batch_size": trial.suggest_categorical("model_batch_size", [16, 32, 64]),
        "tau": trial.suggest_float("tau", 0.001, 0.025, log=True),
        "sequence_length": trial.suggest_categorical("sequence_length", [4, 8, 12]),
    }


#: Raw SLAC trial parameters to constructor keyword arguments (its space has no other encoding)
convert_slac_params = convert_batch_size_pow


def sample_dreamer_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo3 sampler of Dreamer: the learning rates of its three parts (the actor's ``learning_rate``, the value's
    and the world model's), the batch of sequences and their length, and the behaviour's imagination horizon,
    ``lambda_`` of the returns and the KL's free nats. Log-uniform ranges bracket the paper's learning rates
    (appendix A: actor and value 8e-5, model 6e-4) by about 3x on either side; the batch (16, 32, 50, 64 sequences)
    and the sequence length (32, 50, 64 steps) include its 50 and 50, the horizon (10, 15, 20) its 15; ``lambda_``
    is uniform over 0.9 - 0.98 (0.95) and the free nats over 1 - 5 (3).

    The discount (0.99), the gradient clip (100), the exploration noise (0.3), the network sizes (as ``policy_kwargs``
    set them), the planner, the seed episodes (``learning_starts``) and the update schedule (``train_freq``,
    ``gradient_steps``) stay as the yml or ``--hyperparams`` set them: the last two decide a trial's cost more than
    its outcome. An update filters ``batch_size * sequence_length`` states and imagines ``imagination_horizon`` steps
    from each: the largest draws (64 x 64, horizon 20) filter 1.6x the paper's 2500 states and imagine 2.2x its
    steps, the smallest (16 x 32, horizon 10) a fifth and a seventh. Episodes may be shorter than a sequence (it is
    padded before its episode's first frame)."""
    return convert_dreamer_params(_suggest_dreamer(trial))


def _suggest_dreamer(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 3e-5, 3e-4, log=True),
        "value_learning_rate": trial.suggest_float("value_learning_rate", 3e-5, 3e-4, log=True),
        "model_learning_rate": trial.suggest_float("model_learning_rate", 2e-4, 2e-3, log=True),
        # Dreamer: 50 sequences of 50 steps (not powers of 2, so both are drawn as they are)
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 50, 64]),
        "sequence_length": trial.suggest_categorical("sequence_length", [32, 50, 64]),
        "imagination_horizon": trial.suggest_categorical("imagination_horizon", [10, 15, 20]),
        "lambda_": trial.suggest_float("lambda_", 0.9, 0.98),
        "free_nats": trial.suggest_float("free_nats", 1.0, 5.0),
    }


def convert_dreamer_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """Raw Dreamer trial parameters to constructor keyword arguments: the same (its space draws every parameter as
    the constructor takes it, the batch size included)."""
    return dict(sampled_params)


#: Entries added to ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER``: one sampler of the
#: GAARA search space per SAC-based algorithm (DrQ included), DrQv2's own, SLAC's own and Dreamer's own.
HYPERPARAMS_SAMPLER: dict[str, Callable[[optuna.Trial, int, int, dict], dict[str, Any]]] = {
    **{algorithm.zoo_name: _make_sampler(algorithm) for algorithm in GAARA_SAC_ALGORITHMS},
    DrQv2.zoo_name: sample_drqv2_params,
    SLAC.zoo_name: sample_slac_params,
    Dreamer.zoo_name: sample_dreamer_params,
}
HYPERPARAMS_CONVERTER: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    **dict.fromkeys(HYPERPARAMS_SAMPLER, convert_gaara_params),
    DrQv2.zoo_name: convert_drqv2_params,
    SLAC.zoo_name: convert_slac_params,
    Dreamer.zoo_name: convert_dreamer_params,
}
