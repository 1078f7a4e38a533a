"""A guard for the Stable-Baselines3 (and rl-zoo3) code that sb3-gaara copies or relies on.

``CheckedTraining.train`` with ``GAARASAC._update`` follows SB3's ``SAC.train`` line by line (with documented
differences), the replay buffer repeats lines of SB3's ``ReplayBuffer`` (and its ``np.random`` draws, so that
seeded runs sample the same transitions), the algorithm relies on what ``OffPolicyAlgorithm`` and ``polyak_update`` do, and the
zoo hook patches rl-zoo3's ``ExperimentManager``. None of that fails by itself when the installed version
changes those functions: it silently drifts. So this file stores a fingerprint of each function's source
(sha256 of ``inspect.getsource`` with whitespace runs collapsed, so indentation and line wrapping do not
count) for the versions tested, and fails, naming the function and our code to re-read, when it differs.

When it fails: re-read the installed function against our code named in the message, port what changed
(or decide that nothing needs to), then add the new fingerprint under the new version in ``FINGERPRINTS``.
``python tests/test_sb3_guard.py`` prints the fingerprints of the installed versions, ready to paste.
pyproject.toml pins stable-baselines3, sb3-contrib and rl-zoo3 to the minor version tested (2.9.x).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
from importlib.metadata import version

import pytest

#: qualified name (module path, then the attribute we use, e.g. ``...OffPolicyAlgorithm.set_parameters``, even where
#: a base class defines it) -> {version of its distribution: sha256 of its whitespace-normalised source}
FINGERPRINTS: dict[str, dict[str, str]] = {
    "stable_baselines3.sac.sac.SAC.train": {
        "2.9.2": "c7c0b3cfc781644ad1a611b1780b8527e47c98f7bb6a7dafab0a653eddc03bdb",
    },
    "stable_baselines3.common.buffers.ReplayBuffer.__init__": {
        "2.9.2": "5d68c94fe3bf219a81f4273cae51e2c0be306f953c4a9c168f2e8324a14043a4",
    },
    "stable_baselines3.common.buffers.ReplayBuffer.add": {
        "2.9.2": "7a768d19824ea038f4c3453be02f99e55fcc4df6b63743a36e6e580fb4db995f",
    },
    "stable_baselines3.common.buffers.ReplayBuffer.sample": {
        "2.9.2": "c6b1b1f13d44948bcf5a358b5b5500274733b3f58fd44f76ff75092b6982d4b9",
    },
    "stable_baselines3.common.buffers.BaseBuffer.sample": {
        "2.9.2": "ac15e5ce2a783831276b769d3f35364c7c8e9fbb1269c044e60317adb3f600d9",
    },
    "stable_baselines3.common.buffers.ReplayBuffer._get_samples": {
        "2.9.2": "baf60dadd93747316b6e0ccf7b6649dfaee7b4ba78a142adde2114cc13e55bdf",
    },
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm.collect_rollouts": {
        "2.9.2": "75c55922a414c4cc43bf873907d80dad29cf91dd4f5641e4b8e8daed6e033055",
    },
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm._update_learning_rate": {
        "2.9.2": "59ff1412108382457026209f6e612212012a6babf204f3f759d511c38034c1f8",
    },
    "stable_baselines3.common.utils.update_learning_rate": {
        "2.9.2": "bf18b3d67211acbbf733f76daf6131b0e367914d9171b7ea670fc79b987fd9cd",
    },
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm.load_replay_buffer": {
        "2.9.2": "b2753a437efb640189362329b07066e778ffd8c18d34e0f204cb2aff3d129875",
    },
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm.set_parameters": {
        "2.9.2": "e9348d2a0872e8c5ea11baea8921f5c030dc130251e7460e6e1a1b39f56da48b",
    },
    "stable_baselines3.common.utils.polyak_update": {
        "2.9.2": "3f81a041dd12f6fabd84d93c961bcdee13384a4a928a43fdd2456ccf08a2f865",
    },
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm._sample_action": {
        "2.9.2": "5fa732c9055b238911c9e3cbd28b97ff56ba38d8b92846dd6b948d3b2525b923",
    },
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm._store_transition": {
        "2.9.2": "7cc59febfea0244519850ca582596731191cd3759e80929caf59743c59465c45",
    },
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm.learn": {
        "2.9.2": "080c75043e0caa592c3513fc284e605443078e02fd2bd91790e5de9a98757d83",
    },
    "stable_baselines3.common.base_class.BaseAlgorithm._update_current_progress_remaining": {
        "2.9.2": "987f82c974f32c7665f672d31116cc040e1c50d242fbffb1bc45ed68732fb735",
    },
    "stable_baselines3.common.callbacks.BaseCallback.on_step": {
        "2.9.2": "ac7ba65a226bddb7f2895b76bd958263f8c807da378053d63c0a90c2ea59bc13",
    },
    "stable_baselines3.common.callbacks.EvalCallback._on_step": {
        "2.9.2": "ab70003b94c6955cdb20f5317adffbd2be6f1c391d7fc07e9c5c128c4848b7cd",
    },
    "stable_baselines3.common.callbacks.EvalCallback._log_success_callback": {
        "2.9.2": "f0981e12698f8edc745e1ad0a01c9c67d3989534814abb65a42f2ba47e7d4bb0",
    },
    "stable_baselines3.common.callbacks.CheckpointCallback._on_step": {
        "2.9.2": "e9222feea6a6dc73b063a0a3b18a2b5b14f970be5a1ea5f55977c078a386672a",
    },
    "stable_baselines3.common.callbacks.ProgressBarCallback._on_step": {
        "2.9.2": "173c6411c4ddb2c5551b4b2d69043689fd4087d9f7b34fe2e9e941c44261691f",
    },
    "stable_baselines3.common.callbacks.ConvertCallback._on_step": {
        "2.9.2": "13503e2f6dea664d8d640372ee7b2e959d2870cf0bdbe420e661c72c17388d0d",
    },
    "rl_zoo3.callbacks.TrialEvalCallback._on_step": {
        "2.9.2": "86102ab632ee5212aa187f90f66f9ebadabae7e022e9f1a3c68d3f5107195f00",
    },
    "rl_zoo3.exp_manager.ExperimentManager.setup_experiment": {
        "2.9.2": "b0801e46b7443cb42346bd72be6502108bca65326b559635c5460cd4a15722a0",
    },
    "rl_zoo3.exp_manager.ExperimentManager._load_pretrained_agent": {
        "2.9.2": "1b6d4efab02c48c2780ca794d1ec2381c99d4346b0d29a1e7f92b437aae29860",
    },
    "rl_zoo3.exp_manager.ExperimentManager.__init__": {
        "2.9.2": "baa5c1f94e36bcaebcbe3dbaa0961b57ef518a104ca49bb7ecd78555e052b358",
    },
    "rl_zoo3.exp_manager.ExperimentManager.read_hyperparameters": {
        "2.9.2": "a28f2701bec22a64d314af6e332f88693170387a65d60fd123c685cafb39d932",
    },
    "rl_zoo3.exp_manager.ExperimentManager.create_callbacks": {
        "2.9.2": "0c69daed67678bbb7ac078784a7831f4ab049add747bdf8ad5b5f58b2dd29a2f",
    },
    "rl_zoo3.exp_manager.ExperimentManager._save_config": {
        "2.9.2": "94e6bff0190b7dba20ba27377472924341982e1fa69433d925996ad8c3eaeeec",
    },
    "rl_zoo3.train.train": {
        "2.9.2": "1c095c259c35221a17db662f7553597cb113c2a9fa76adcc9a8243793dfaa401",
    },
    "stable_baselines3.td3.td3.TD3.train": {
        "2.9.2": "b35b153c1484661726601552554d0bb89caaf963f7e67948275445e5e9db3fad",
    },
    "stable_baselines3.td3.policies.TD3Policy._build": {
        "2.9.2": "1d9b577b26368876ee448a75bc868428a725f005b618160922655f1faaa6f494",
    },
    "stable_baselines3.td3.policies.TD3Policy.make_critic": {
        "2.9.2": "e01b4287c555163c30c75c43aa525e9263ddc25dc312479e21f717bbd1698df4",
    },
    "stable_baselines3.sac.sac.SAC._setup_model": {
        "2.9.2": "664f5f553c9805879694f82fb7f017139236971ae9bed926039fc41a29c10217",
    },
    "stable_baselines3.common.policies.BasePolicy.predict": {
        "2.9.2": "aef56607dba4b0183c0dbc943691db74a75d31770f1ed34cc541b50f40ab6cbb",
    },
    "stable_baselines3.common.distributions.SquashedDiagGaussianDistribution.log_prob": {
        "2.9.2": "766d6c04e9967f99fd9746422af7872e946e3ba94d7411240d35c6ef92ab0e9b",
    },
    "stable_baselines3.sac.policies.Actor.get_action_dist_params": {
        "2.9.2": "9412182c58c125630e4ceec9c5a9590e672f4c940235b76f5f0992d690290a02",
    },
    "stable_baselines3.sac.policies.SACPolicy._build": {
        "2.9.2": "54914727f3280c80ce9d531ddd7955cca5d077b9214210a94aa6329ead60b80c",
    },
    "stable_baselines3.sac.policies.SACPolicy.make_actor": {
        "2.9.2": "e26e0941402634b91634d3d0862c09255e95796fac619be05f9555be9087a4f6",
    },
    "stable_baselines3.sac.policies.SACPolicy.make_critic": {
        "2.9.2": "e01b4287c555163c30c75c43aa525e9263ddc25dc312479e21f717bbd1698df4",
    },
}

#: what in sb3-gaara follows each guarded function: what to re-read when its fingerprint changes
OUR_CODE: dict[str, str] = {
    "stable_baselines3.td3.td3.TD3.train": (
        "sb3_gaara.common.training.CheckedTraining.train and DrQv2._gradient_step (TD3's loop: training mode, the "
        "learning rates from the schedule, one sample and one update per gradient step; the update is DrQ-v2's, with "
        "the documented differences)"
    ),
    "stable_baselines3.td3.policies.TD3Policy._build": (
        "sb3_gaara.drq.drqv2.DrQv2Policy._build (the actor and critic on tied encoders, no target actor)"
    ),
    "stable_baselines3.td3.policies.TD3Policy.make_critic": ("sb3_gaara.drq.drqv2.DrQv2Policy.make_critic"),
    "stable_baselines3.sac.sac.SAC._setup_model": (
        "sb3_gaara.slac.slac.SLAC._setup_model and sb3_gaara.gaara.gaara_sac.GAARASAC._setup_model (both call it, then "
        "replace parts of what it built: the temperature's optimizer, the buffer's arguments)"
    ),
    "stable_baselines3.common.policies.BasePolicy.predict": (
        "sb3_gaara.slac.policies.SLACPolicy.predict and sb3_gaara.dreamer.policies.DreamerPolicy.predict (SB3's "
        "recurrent contract: state and episode_start, the same scaling and clipping of actions)"
    ),
    "stable_baselines3.common.distributions.SquashedDiagGaussianDistribution.log_prob": (
        "sb3_gaara.gaara.policies.ExactSquashedDiagGaussianDistribution (DrQ's exact tanh log-determinant in place of "
        "this clamped one, which GAARA, SAC+AE and CURL keep)"
    ),
    "stable_baselines3.sac.policies.Actor.get_action_dist_params": (
        "sb3_gaara.gaara.policies.GAARAActor (SAC+AE's tanh-squashed log-std in [-10, 2] where SB3 clamps)"
    ),
    "stable_baselines3.sac.policies.SACPolicy._build": (
        "sb3_gaara.gaara.policies.GAARAPolicy._build (tied encoders, the decoder and the comparison module)"
    ),
    "stable_baselines3.sac.policies.SACPolicy.make_actor": ("sb3_gaara.gaara.policies.GAARAPolicy.make_actor"),
    "stable_baselines3.sac.policies.SACPolicy.make_critic": ("sb3_gaara.gaara.policies.GAARAPolicy.make_critic"),
    "stable_baselines3.sac.sac.SAC.train": (
        "sb3_gaara.common.training.CheckedTraining.train and GAARASAC._update (same line order, with the documented "
        "differences: SAC+AE's update cadence, the auxiliary losses, the detached encoder features), and "
        "sb3_gaara.common.training.CheckedTraining.train and SLAC.sac_update (SB3's loop and update on latents and histories)"
    ),
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm._sample_action": (
        "sb3_gaara.slac.slac.SLAC._sample_action (the same random warm-up draw and scaling, with the actor's history) "
        "and sb3_gaara.dreamer.dreamer.Dreamer._sample_action (the same, with the filtered latent state)"
    ),
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm._store_transition": (
        "sb3_gaara.common.recurrent.TracksEpisodeStarts._store_transition (SLAC's and Dreamer's: calls it, then reads "
        "the dones as the next episode starts)"
    ),
    "stable_baselines3.common.buffers.ReplayBuffer.__init__": (
        "sb3_gaara.common.buffers.AugmentedPixelReplayBuffer.__init__ (runs BaseBuffer.__init__ and repeats the remaining "
        "lines, without the two full-stack observation arrays)"
    ),
    "stable_baselines3.common.buffers.ReplayBuffer.add": (
        "sb3_gaara.common.buffers.AugmentedPixelReplayBuffer.add (its last lines, after the comment "
        "'SB3 2.9 ReplayBuffer.add from here on')"
    ),
    "stable_baselines3.common.buffers.ReplayBuffer.sample": (
        "sb3_gaara.common.buffers.AugmentedPixelReplayBuffer.sample_transitions (calls it: the np.random draws of "
        "batch_inds must stay SB3's, optimize_memory_usage included) and "
        "sb3_gaara.common.sequence_buffer.SequenceReplayBuffer.sample (repeats its draws of the last transitions and envs)"
    ),
    "stable_baselines3.common.buffers.BaseBuffer.sample": (
        "sb3_gaara.common.buffers.AugmentedPixelReplayBuffer.sample_transitions (ReplayBuffer.sample calls it for the "
        "np.random draw of batch_inds)"
    ),
    "stable_baselines3.common.buffers.ReplayBuffer._get_samples": (
        "sb3_gaara.common.buffers.AugmentedPixelReplayBuffer._get_samples (the same np.random draw of env_indices, the "
        "dones * (1 - timeouts) and the reward normalisation)"
    ),
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm.collect_rollouts": (
        "sb3_gaara.gaara.gaara_sac.GAARASAC (learn/train rely on when it calls replay_buffer.add and train, and on the "
        "observations it stores) and sb3_gaara.common.buffers.AugmentedPixelReplayBuffer.add"
    ),
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm._update_learning_rate": (
        "sb3_gaara.common.training.CheckedTraining.train (calls it with _scheduled_optimizers) and the learning-rate "
        "handling of sb3_gaara.gaara.cuda_graphs (a new rate recaptures the graphs)"
    ),
    "stable_baselines3.common.utils.update_learning_rate": (
        "sb3_gaara.gaara.cuda_graphs (it recaptures the graphs when a param group's 'lr' changes, which this function sets)"
    ),
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm.load_replay_buffer": (
        "sb3_gaara.gaara.gaara_sac.GAARASAC.load_replay_buffer and AugmentedPixelReplayBuffer.__setstate__ (the pickled "
        "buffer, truncate_last_traj)"
    ),
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm.set_parameters": (
        "sb3_gaara.gaara.gaara_sac.GAARASAC.set_parameters (drops the captured CUDA graphs after it) and the optimizers "
        "saved by GAARASAC._get_torch_save_params"
    ),
    "stable_baselines3.common.utils.polyak_update": (
        "sb3_gaara.gaara.gaara_sac.GAARASAC._gradient_step (the EMA of the Q heads and of the encoder, also replayed "
        "inside the CUDA graphs of sb3_gaara.gaara.cuda_graphs)"
    ),
    "stable_baselines3.common.off_policy_algorithm.OffPolicyAlgorithm.learn": (
        "sb3_gaara.gaara.gaara_sac.GAARASAC._can_begin_update_early (overlap_env_step: a rollout of one agent step is "
        "followed by train() only when num_timesteps > learning_starts, with gradient_steps updates)"
    ),
    "stable_baselines3.common.base_class.BaseAlgorithm._update_current_progress_remaining": (
        "sb3_gaara.gaara.gaara_sac.GAARASAC._begin_update (computes the progress of after the agent step the same way, "
        "for the learning rates of an update begun before it)"
    ),
    "stable_baselines3.common.callbacks.BaseCallback.on_step": (
        "sb3_gaara.common.overlap.may_act_on_step (n_calls is incremented before _on_step: the coming call is n_calls + 1)"
    ),
    "stable_baselines3.common.callbacks.EvalCallback._on_step": (
        "sb3_gaara.common.overlap.may_act_on_step (evaluates when n_calls % eval_freq == 0) and "
        "sb3_gaara.evaluation.EnvStepEvalCallback.evaluate (adapted from it)"
    ),
    "stable_baselines3.common.callbacks.EvalCallback._log_success_callback": (
        "sb3_gaara.evaluation.run_episodes (collects each finished episode's is_success the same way, in the "
        "evaluation process too)"
    ),
    "stable_baselines3.common.callbacks.CheckpointCallback._on_step": (
        "sb3_gaara.common.overlap.may_act_on_step (saves when n_calls % save_freq == 0)"
    ),
    "stable_baselines3.common.callbacks.ProgressBarCallback._on_step": (
        "sb3_gaara.common.overlap.may_act_on_step (only advances the bar: never acts)"
    ),
    "stable_baselines3.common.callbacks.ConvertCallback._on_step": (
        "sb3_gaara.common.overlap.may_act_on_step (without a function it does nothing)"
    ),
    "rl_zoo3.callbacks.TrialEvalCallback._on_step": (
        "sb3_gaara.zoo.patches.trial_eval_callback_class's may_act_on_step (evaluates and may prune when n_calls % "
        "eval_freq == 0)"
    ),
    "rl_zoo3.exp_manager.ExperimentManager.setup_experiment": (
        "sb3_gaara.zoo.patches.patch_exp_manager (checks the names on what _preprocess_action_noise returns, expecting "
        "that dict to go whole to the constructor or to _load_pretrained_agent)"
    ),
    "rl_zoo3.exp_manager.ExperimentManager._load_pretrained_agent": (
        "sb3_gaara.zoo.patches.patch_exp_manager (drops image_size and variant before it calls ALGOS[algo].load)"
    ),
    "rl_zoo3.exp_manager.ExperimentManager.__init__": (
        "sb3_gaara.zoo.patches.patch_exp_manager (binds its arguments to set config and to tell the user's eval_freq and "
        "n_eval_episodes from defaults; reads env_kwargs, _eval_env_kwargs_args, eval_freq, n_eval_episodes, "
        "n_eval_envs, save_path and params_path) and sb3_gaara.zoo.patches.protocol_eval_callback"
    ),
    "rl_zoo3.exp_manager.ExperimentManager.read_hyperparameters": (
        "sb3_gaara.zoo.patches.patch_exp_manager (its read_hyperparameters: runs it with self.env_kwargs emptied so that "
        "the yml's env_kwargs survive, then merges the command line's into them and sets eval_env_kwargs)"
    ),
    "rl_zoo3.exp_manager.ExperimentManager.create_callbacks": (
        "sb3_gaara.zoo.patches.patch_exp_manager and sb3_gaara.zoo.patches.protocol_eval_callback (run it with "
        "eval_freq=0, then add the protocol's EnvStepEvalCallback built as it builds its EvalCallback)"
    ),
    "rl_zoo3.exp_manager.ExperimentManager._save_config": (
        "sb3_gaara.zoo.patches.patch_exp_manager (sets args.env_kwargs to the merged env_kwargs because args.yml, written "
        "here, is where enjoy and record_video read them)"
    ),
    "rl_zoo3.train.train": (
        "sb3_gaara.zoo.patches._ZOO_EVAL_OPTIONS (the defaults of --eval-freq and --eval-episodes, which leave the "
        "papers' protocol in place) and sb3_gaara.zoo.patches._option_on_command_line (the option names)"
    ),
}


def resolve(qualified_name: str) -> object:
    """The object named ``package.module.Class.attribute`` (the longest importable prefix is the module)."""
    parts = qualified_name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ImportError(qualified_name)


def fingerprint(function: object) -> str:
    """sha256 of the function's source with every run of whitespace collapsed to one space."""
    source = inspect.getsource(function)  # type: ignore[arg-type]
    return hashlib.sha256(" ".join(source.split()).encode()).hexdigest()


def installed_version(qualified_name: str) -> str:
    return version(qualified_name.split(".")[0])


@pytest.mark.parametrize("qualified_name", sorted(FINGERPRINTS))
def test_guarded_function_is_unchanged(qualified_name: str):
    function = resolve(qualified_name)
    current = fingerprint(function)
    recorded = FINGERPRINTS[qualified_name]
    if current in recorded.values():
        return
    installed = installed_version(qualified_name)
    code = function.__code__  # type: ignore[attr-defined]
    pytest.fail(
        f"{qualified_name} has changed: the installed {qualified_name.split('.')[0]} {installed} has a source "
        f"({code.co_filename}:{code.co_firstlineno}) whose fingerprint {current} matches none recorded for "
        f"{', '.join(sorted(recorded))}. sb3-gaara relies on it: re-read it against {OUR_CODE[qualified_name]}, "
        f"port what changed, then record the new fingerprint in tests/test_sb3_guard.py: "
        f"FINGERPRINTS[{qualified_name!r}][{installed!r}] = {current!r}",
        pytrace=False,
    )


def test_every_guarded_function_names_our_code_that_follows_it():
    assert set(OUR_CODE) == set(FINGERPRINTS)
    for qualified_name in FINGERPRINTS:
        for name in re.findall(r"sb3_gaara(?:\.\w+)+", OUR_CODE[qualified_name]):
            resolve(name)  # the message must not point at code that has moved or been renamed


if __name__ == "__main__":
    for name in sorted(FINGERPRINTS):
        print(f"{name}  {installed_version(name)}  {fingerprint(resolve(name))}")
