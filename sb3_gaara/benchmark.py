"""Replay memory, sampling, update and environment-step figures of GAARASAC next to SB3's SAC.

``python -m sb3_gaara.benchmark [--json out.json] [--device cpu|cuda] [--quick] [--conv-dtype bfloat16]``
measures, in one process on one machine, with 3 stacked ``3 x 100 x 100`` frames (``9 x 100 x 100``
observations) and 84 px crops:

* replay bytes per transition of :class:`~sb3_gaara.buffers.AugmentedPixelReplayBuffer` in steady state
  (full, after wrapping) and of SB3's ``ReplayBuffer`` for the same spaces;
* the time to sample a batch with both crops, and SB3's sample followed by the same crops;
* the time of one gradient step (``model.train(gradient_steps=1, batch_size=128)``) of ``GAARASAC("CnnPolicy")``
  and of SB3's ``SAC("CnnPolicy")`` (NatureCNN, full-stack buffer) on the same random-image env, and their ratio;
* end-to-end environment steps per second of ``GAARASAC`` on ``dmc-cheetah-run``, counted after action repeat
  (as the papers' tables count them), while collecting random warm-up steps and while training one update per agent step.

Timings are medians after warm-up (the minimum is printed too: it shows what the machine does when other
processes leave it alone). It prints a table and, with ``--json``, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecFrameStack

from sb3_gaara.buffers import AugmentedPixelReplayBuffer
from sb3_gaara.crops import center_crop, crop, random_crop_offsets
from sb3_gaara.gaara_sac import GAARASAC

FRAME_SHAPE = (3, 100, 100)
FRAME_STACK = 3
IMAGE_SIZE = 84
#: cheetah-run's action dimension: the spaces of the memory and update figures are the task's
ACTION_DIM = 6
#: agent steps per episode on cheetah-run (1000 simulator steps, action repeat 4)
EPISODE_STEPS = 250
DMC_ENV_ID = "dmc-cheetah-run"
#: update time of the paper's reference code (CURL / SAC+GAARA) over SB3's SAC("CnnPolicy"), batch 128, measured
#: in one process on this project's 2-core CPU machines (1.3 s / 0.39 s)
REFERENCE_UPDATE_RATIO = 3.3
#: the target of GAARASAC's update over SB3's SAC("CnnPolicy") on the CPU (1.5x faster than the reference code)
TARGET_UPDATE_RATIO = 2.2


class RandomFrameEnv(gym.Env):
    """Random ``3 x 100 x 100`` frames, episodes of ``episode_steps`` steps ending in a truncation (as DMC's)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, episode_steps: int = EPISODE_STEPS) -> None:
        super().__init__()
        self.observation_space = spaces.Box(0, 255, FRAME_SHAPE, dtype=np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)
        self.episode_steps = episode_steps
        self._step = 0

    def _frame(self) -> np.ndarray:
        return self.np_random.integers(0, 256, FRAME_SHAPE, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._step = 0
        return self._frame(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._step += 1
        return self._frame(), float(self.np_random.normal()), False, self._step >= self.episode_steps, {}


def stacked_random_env(seed: int = 0) -> VecFrameStack:
    venv = VecFrameStack(DummyVecEnv([RandomFrameEnv]), FRAME_STACK)
    venv.seed(seed)
    return venv


def _synchronize(device: th.device) -> None:
    if device.type == "cuda":
        th.cuda.synchronize(device)


def time_calls(function: Callable[[], Any], repeats: int, warmup: int, device: th.device) -> dict[str, float]:
    """Median and minimum seconds of ``function()`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    durations = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        function()
        _synchronize(device)
        durations.append(time.perf_counter() - start)
    return {"median_s": statistics.median(durations), "min_s": min(durations), "repeats": repeats}


def fill(buffers: list[ReplayBuffer], venv: VecEnv, n_steps: int, seed: int = 0) -> None:
    """Add ``n_steps`` transitions to every buffer, as SB3's off-policy loop does (terminal observations in next_obs)."""
    rng = np.random.default_rng(seed)
    obs = venv.reset()
    assert isinstance(obs, np.ndarray)
    for _ in range(n_steps):
        actions = rng.uniform(-1, 1, (venv.num_envs, ACTION_DIM)).astype(np.float32)
        new_obs, rewards, dones, infos = venv.step(actions)
        assert isinstance(new_obs, np.ndarray)
        next_obs = new_obs.copy()
        for i, done in enumerate(dones):
            if done:
                next_obs[i] = infos[i]["terminal_observation"]
        for buffer in buffers:
            buffer.add(obs, next_obs, actions, rewards, dones, infos)
        obs = new_obs


def sb3_bytes_per_transition(buffer: ReplayBuffer) -> float:
    arrays = [buffer.observations, buffer.actions, buffer.rewards, buffer.dones, buffer.timeouts]
    if not buffer.optimize_memory_usage:
        arrays.append(buffer.next_observations)
    return sum(array.nbytes for array in arrays) / (buffer.buffer_size * buffer.n_envs)


def bench_replay(buffer_size: int, batch_size: int, repeats: int, device: th.device, storage_device: str | None) -> dict:
    """Bytes per transition in steady state and sample times, ours against SB3's buffer plus the same crops."""
    venv = stacked_random_env()
    ours = AugmentedPixelReplayBuffer(
        buffer_size,
        venv.observation_space,
        venv.action_space,
        device=device,
        image_size=IMAGE_SIZE,
        storage_device=storage_device,
    )
    reference = ReplayBuffer(buffer_size, venv.observation_space, venv.action_space, device=device)
    fill([ours, reference], venv, n_steps=buffer_size + buffer_size // 2)

    def sb3_sample_and_crop() -> None:
        # The reference implementations' path: full stacks gathered and moved, then cropped.
        samples = reference.sample(batch_size)
        top, left = random_crop_offsets(
            batch_size, FRAME_SHAPE[1], FRAME_SHAPE[2], IMAGE_SIZE, device=samples.observations.device
        )
        center_crop(samples.observations, IMAGE_SIZE).contiguous()
        center_crop(samples.next_observations, IMAGE_SIZE).contiguous()
        crop(samples.observations, top, left, IMAGE_SIZE)

    warmup = max(3, repeats // 10)
    return {
        "buffer_size": buffer_size,
        "frame_bytes": int(np.prod(FRAME_SHAPE)),
        "ours_bytes_per_transition": ours.bytes_per_transition(),
        "sb3_bytes_per_transition": sb3_bytes_per_transition(reference),
        "storage_device": "host (numpy)" if ours.storage_device is None else str(ours.storage_device),
        "batch_size": batch_size,
        "ours_sample": time_calls(lambda: ours.sample(batch_size), repeats, warmup, device),
        "sb3_sample_and_crop": time_calls(sb3_sample_and_crop, max(5, repeats // 5), warmup, device),
    }


def bench_updates(
    batch_size: int, steps: int, warmup: int, filled: int, device: th.device, seed: int = 0, conv_dtype: str = "float32"
) -> dict[str, Any]:
    """Seconds per gradient step (``model.train(1, batch_size)``) of GAARASAC and SB3's SAC, and their ratio.

    Both models train on buffers of ``filled`` transitions of the same random-image env. Their steps alternate,
    so that a change in the machine's load during the measurement weighs on both alike.
    """
    models: dict[str, SAC] = {}
    for algo, cls in (("GAARASAC", GAARASAC), ("SAC", SAC)):
        model = cls(
            "CnnPolicy",
            stacked_random_env(seed),
            buffer_size=filled + 1,
            learning_starts=filled,
            batch_size=batch_size,
            seed=seed,
            device=device,
            policy_kwargs=dict(conv_dtype=conv_dtype) if cls is GAARASAC else None,
        )
        model.learn(total_timesteps=filled)  # random actions only: SB3 trains once num_timesteps > learning_starts
        models[algo] = model
    durations: dict[str, list[float]] = {algo: [] for algo in models}
    page_faults: dict[str, list[int]] = {algo: [] for algo in models}
    for step in range(warmup + steps):
        for algo, model in models.items():
            _synchronize(model.device)
            faults = _minor_page_faults()
            start = time.perf_counter()
            model.train(gradient_steps=1, batch_size=batch_size)
            _synchronize(model.device)
            if step >= warmup:
                durations[algo].append(time.perf_counter() - start)
                page_faults[algo].append(_minor_page_faults() - faults)
    results: dict[str, Any] = {
        algo: {
            "policy": type(model.policy).__name__,
            "parameters": sum(p.numel() for p in model.policy.parameters()),
            "median_s": statistics.median(durations[algo]),
            "min_s": min(durations[algo]),
            "repeats": steps,
            "median_minor_page_faults": statistics.median(page_faults[algo]),
        }
        for algo, model in models.items()
    }
    results["GAARASAC"]["conv_dtype"] = conv_dtype
    results["ratio"] = results["GAARASAC"]["median_s"] / results["SAC"]["median_s"]
    return results


def _minor_page_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing).

    On a CPU they explain most of the spread of the update times: glibc returns the memory an update
    freed to the system and the next update faults it in again, 4 KB at a time (README, "A tip for CPU
    training").
    """
    try:
        import resource
    except ImportError:  # Windows has no resource module
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def make_dmc_env() -> tuple[VecEnv, int]:
    """``dmc-cheetah-run`` with 3 stacked frames, and its action repeat."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from sb3_gaara.envs import default_action_repeat, register_dmc_envs

    register_dmc_envs()
    venv = VecFrameStack(DummyVecEnv([lambda: gym.make(DMC_ENV_ID)]), FRAME_STACK)
    venv.seed(0)
    return venv, default_action_repeat("cheetah")


def bench_env_steps(random_steps: int, train_steps: int, device: th.device) -> dict[str, Any]:
    """Environment steps per second (after action repeat) of GAARASAC on dmc-cheetah-run."""
    try:
        venv, action_repeat = make_dmc_env()
    except Exception as error:  # no dm_control, no OpenGL, or the env package missing: say why and go on
        return {"skipped": f"{DMC_ENV_ID} could not be built: {error!r}"}
    model = GAARASAC(
        "CnnPolicy",
        venv,
        buffer_size=random_steps + train_steps + 1,
        learning_starts=random_steps,
        device=device,
        seed=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=random_steps)
    collect_s = time.perf_counter() - start
    start = time.perf_counter()
    model.learn(total_timesteps=train_steps, reset_num_timesteps=False)
    train_s = time.perf_counter() - start
    venv.close()
    return {
        "env_id": DMC_ENV_ID,
        "action_repeat": action_repeat,
        "random_agent_steps": random_steps,
        "collect_env_steps_per_s": random_steps * action_repeat / collect_s,
        "train_agent_steps": train_steps,
        "gradient_steps": model._n_updates,
        "train_env_steps_per_s": train_steps * action_repeat / train_s,
    }


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": th.get_num_threads(),
        "torch": th.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "numpy": np.__version__,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "malloc_environment": {name: value for name, value in os.environ.items() if name.startswith("MALLOC_")},
    }


def _ms(timing: dict[str, float]) -> str:
    return f"{timing['median_s'] * 1e3:8.2f} ms (min {timing['min_s'] * 1e3:.2f})"


def _s(timing: dict[str, float]) -> str:
    return f"{timing['median_s']:8.3f} s  (min {timing['min_s']:.3f})"


def _conv_dtype_argument(figures: dict[str, Any]) -> str:
    conv_dtype = figures.get("conv_dtype", "float32")
    return "" if conv_dtype == "float32" else f", conv_dtype={conv_dtype!r}"


def report(results: dict[str, Any]) -> str:
    replay, update, env = results["replay"], results["update"], results["env_steps"]
    ours, sb3 = update["GAARASAC"], update["SAC"]
    lines = [
        f"sb3-gaara benchmark ({results['device']}; {results['machine']['cpu_count']} CPUs, "
        f"{results['machine']['torch_threads']} torch threads, load {results['machine']['load_average_1min']})",
        f"observation 9x100x100 uint8 (3 stacked RGB frames), crops {IMAGE_SIZE} px, batch {replay['batch_size']}",
        "",
        "replay memory per transition (steady state)",
        f"  AugmentedPixelReplayBuffer      {replay['ours_bytes_per_transition'] / 1e3:8.1f} KB",
        f"  SB3 ReplayBuffer                {replay['sb3_bytes_per_transition'] / 1e3:8.1f} KB  "
        f"({replay['sb3_bytes_per_transition'] / replay['ours_bytes_per_transition']:.1f}x ours)",
        f"  one frame                       {replay['frame_bytes'] / 1e3:8.1f} KB",
        f"sample, batch {replay['batch_size']}, center + random crops (storage: {replay['storage_device']})",
        f"  AugmentedPixelReplayBuffer      {_ms(replay['ours_sample'])}",
        f"  SB3 sample + sb3_gaara.crops    {_ms(replay['sb3_sample_and_crop'])}",
        f"gradient step, batch {replay['batch_size']} (model.train)",
        f"  GAARASAC('CnnPolicy'{_conv_dtype_argument(ours)})".ljust(33) + " " + _s(ours),
        f"  SB3 SAC('CnnPolicy')            {_s(sb3)}",
        f"  ratio GAARASAC / SAC            {update['ratio']:8.2f}x  "
        f"(target <= {TARGET_UPDATE_RATIO}x; the paper's reference code: {REFERENCE_UPDATE_RATIO}x)",
        f"  minor page faults per update    {ours['median_minor_page_faults']:8.0f} GAARASAC, "
        f"{sb3['median_minor_page_faults']:.0f} SAC (median)",
        f"end to end on {DMC_ENV_ID} (environment steps after action repeat)",
    ]
    if "skipped" in env:
        lines.append(f"  skipped: {env['skipped']}")
    else:
        collect, train = env["collect_env_steps_per_s"], env["train_env_steps_per_s"]
        lines += [
            f"  random warm-up ({env['random_agent_steps']} agent steps)   {collect:8.1f} env steps/s",
            f"  training ({env['train_agent_steps']} agent steps, 1 update each) {train:6.2f} env steps/s",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m sb3_gaara.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--device", default="cpu", help="training device: cpu or cuda (default: cpu)")
    parser.add_argument(
        "--storage-device",
        default=None,
        help="where the replay frames live: omitted = host memory on a CPU run, the training device on a CUDA run",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute on a 2-core CPU)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--conv-dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="GAARAPolicy's conv_dtype in the update figures (bfloat16: mixed-precision convolutions)",
    )
    args = parser.parse_args(argv)

    device = th.device(args.device)
    if device.type == "cuda" and not th.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    storage_device = args.storage_device or ("auto" if device.type == "cuda" else None)
    quick = args.quick
    results: dict[str, Any] = {"device": str(device), "quick": quick, "machine": machine()}
    results["replay"] = bench_replay(
        buffer_size=1_000 if quick else 5_000,
        batch_size=args.batch_size,
        repeats=50 if quick else 200,
        device=device,
        storage_device=storage_device,
    )
    steps, warmup = (4, 1) if quick else (25, 3)
    results["update"] = bench_updates(
        args.batch_size, steps=steps, warmup=warmup, filled=300, device=device, conv_dtype=args.conv_dtype
    )
    results["env_steps"] = bench_env_steps(random_steps=100 if quick else 1000, train_steps=4 if quick else 20, device=device)
    print(report(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)
        print(f"\nfigures written to {args.json}")
    return results


if __name__ == "__main__":
    main()
