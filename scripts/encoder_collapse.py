"""How much of the state an agent's encoders and actor keep over its first updates, offline, on cartpole-swingup.

``python scripts/encoder_collapse.py --algo drq --size 54 --batch-size 128`` fills a buffer with 1000 uniform random
agent steps of ``dmc-cartpole-swingup`` (rendered at ``--size`` px, 3 stacked frames, cached in ``--cache``), then
trains the model on that fixed buffer in steps and prints, after 0, 5, 10, 20, 50, 100 and 200 updates, over 256
buffered observations: the standard deviation across states of the critic's and the actor's encoder features
(averaged over feature dimensions), the share of the actor's first-layer units that never fire, and the spread of the
actor's deterministic action across states.

Why: DrQ and DrQ-v2 end the ``cpu-dmc`` study at a constant action; this measures the mechanism (the first updates
map every state to nearly the same features) setting by setting, without the cost of an online run. The figures are
in docs/results.md ("Agents below the random policy, investigated").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.logger import configure

from sb3_gaara import SACAE, DrQ
from sb3_gaara.envs import register_dmc_envs
from sb3_gaara.study.run import make_eval_env

ALGORITHMS = {"drq": DrQ, "sac_ae": SACAE}
RANDOM_STEPS = 1000
PROBES = (5, 10, 20, 50, 100, 200)


def probe(model: DrQ, observations: th.Tensor, updates: int) -> None:
    """Print what the encoders and the actor tell apart across ``observations`` after ``updates`` updates."""
    with th.no_grad():
        critic_features = model.critic.extract_features(observations, model.critic.features_extractor)
        actor_features = model.actor.extract_features(observations, model.actor.features_extractor)
        first_layer = th.relu(model.actor.latent_pi[0](actor_features))
        mean, _, _ = model.actor.dist_params_from_features(actor_features)
    action = th.tanh(mean)
    dead = (first_layer.max(dim=0).values <= 0).float().mean().item()
    print(
        f"update {updates:4d}: feature std across states, critic {critic_features.std(0).mean():.4f}, actor "
        f"{actor_features.std(0).mean():.4f}; actor's dead first-layer units {dead:.0%}; tanh(mean) "
        f"{action.mean():+.3f} ± {action.std():.4f} across states",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", choices=sorted(ALGORITHMS), default="drq")
    parser.add_argument("--size", type=int, default=54, help="render size = image size (54: the cpu-dmc preset's DrQ)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--pad", type=int, default=4, help="DrQ's largest shift in pixels")
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--cache", type=Path, default=Path("runs/encoder_collapse"))
    args = parser.parse_args()
    th.set_num_threads(1)
    register_dmc_envs()
    env = make_eval_env("dmc-cartpole-swingup", {"height": args.size, "width": args.size, "frame_stack": 3}, seed=0)
    algorithm = ALGORITHMS[args.algo]
    kwargs = {"image_size": args.size, "batch_size": args.batch_size, "seed": 0, "device": "cpu"}
    kwargs.update(learning_starts=RANDOM_STEPS, buffer_size=2 * RANDOM_STEPS)
    if algorithm is DrQ:
        kwargs["augmentation_pad"] = args.pad
    else:  # SAC+AE without its burst of updates at the first train(): this script makes the updates itself
        kwargs["init_gradient_steps"] = 0
    buffer_path = args.cache / f"random_{args.size}px.pkl"
    if not buffer_path.exists():  # the same random steps for every setting of one size
        collector = algorithm("CnnPolicy", env, **kwargs)
        collector.learn(RANDOM_STEPS)
        collector.save_replay_buffer(buffer_path)
    model = algorithm("CnnPolicy", env, **kwargs)
    model.load_replay_buffer(buffer_path)
    model.set_logger(configure(None, [""]))
    np.random.seed(123)  # the replay buffer draws with numpy's global generator, as SB3's does
    observations = model.replay_buffer.sample(256).observations
    probe(model, observations, 0)
    start, done = time.time(), 0
    for updates in (n for n in PROBES if n <= args.updates):
        model.train(gradient_steps=updates - done, batch_size=args.batch_size)
        done = updates
        probe(model, observations, done)
    print(f"{(time.time() - start) / max(done, 1):.2f} s per update")


if __name__ == "__main__":
    main()
