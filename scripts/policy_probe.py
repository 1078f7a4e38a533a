"""What a saved agent's policy does on a DeepMind Control task: its deterministic and its stochastic returns, and how
much its actions vary within an episode.

``python scripts/policy_probe.py runs/cpu-dmc/runs/cartpole_swingup/slac/seed_0/final_model.zip --algo slac
--frame-stack 1`` plays ``--episodes`` episodes with each policy on the study's evaluation env (seed 10000, the
task's 64 px renders by default) and prints the returns' mean ± standard error and the actions' mean, standard
deviation and range.

Why: a study run below the random policy's return can be an untrained policy (a deterministic action that is the same
on every state, while the stochastic policy explores like the random one), a collapse (a saturated constant action)
or a policy that works in some episodes only; these figures tell them apart (docs/results.md, "Agents below the
random policy, investigated").
"""

from __future__ import annotations

import argparse

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from sb3_gaara.algorithms import BY_ZOO_NAME
from sb3_gaara.envs import register_dmc_envs
from sb3_gaara.study.run import make_eval_env


def play(model: BaseAlgorithm, env: VecEnv, deterministic: bool, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns of ``episodes`` episodes and every action taken, with SB3's recurrent ``predict`` contract (the state
    and the episode starts passed back), which the latent-model agents need and the others ignore."""
    returns, actions = [], []
    for _ in range(episodes):
        observation, state, start, total, done = env.reset(), None, np.ones(1, dtype=bool), 0.0, False
        while not done:
            action, state = model.predict(
                np.asarray(observation), state=state, episode_start=start, deterministic=deterministic
            )
            observation, reward, dones, _ = env.step(action)
            start, total, done = np.zeros(1, dtype=bool), total + float(reward[0]), bool(dones[0])
            actions.append(np.asarray(action, dtype=np.float64).reshape(-1))
        returns.append(total)
    return np.asarray(returns), np.concatenate(actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a saved model (.zip)")
    parser.add_argument("--algo", choices=sorted(BY_ZOO_NAME), required=True)
    parser.add_argument("--env", default="dmc-cartpole-swingup")
    parser.add_argument("--size", type=int, default=64, help="render size (the cpu-dmc preset's 64 px)")
    parser.add_argument("--frame-stack", type=int, default=3, help="3 for the SAC-based agents, 1 for SLAC and Dreamer")
    parser.add_argument("--action-repeat", type=int, default=None, help="the task's default unless given (Dreamer: 2)")
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    th.set_num_threads(1)
    th.manual_seed(0)
    register_dmc_envs()
    env_kwargs = {"height": args.size, "width": args.size, "frame_stack": args.frame_stack}
    if args.action_repeat is not None:
        env_kwargs["action_repeat"] = args.action_repeat
    env = make_eval_env(args.env, env_kwargs, seed=10_000)
    model = BY_ZOO_NAME[args.algo].load(args.model, env=env, device="cpu")
    for deterministic in (True, False):
        returns, actions = play(model, env, deterministic, args.episodes)
        standard_error = returns.std(ddof=1) / np.sqrt(len(returns)) if len(returns) > 1 else float("nan")
        print(
            f"{'deterministic' if deterministic else 'stochastic'}: return {returns.mean():.1f} ± {standard_error:.1f} "
            f"(standard error, {len(returns)} episodes: {np.round(returns, 1).tolist()}); actions {actions.mean():+.3f} "
            f"± {actions.std():.4f}, in [{actions.min():+.3f}, {actions.max():+.3f}]"
        )


if __name__ == "__main__":
    main()
