"""Which GPU settings make GAARASAC's fast path faster, measured in one process on one GPU, and where the time goes.

The fast path (``cuda_graphs=True``) replays the update's kernels as CUDA graphs, so what is left is the kernels'
own time. Two settings change which kernels run, without changing the algorithm:

* ``torch.backends.cudnn.benchmark``: cuDNN times its convolution algorithms on the first call of each shape
  and keeps the fastest, instead of its heuristic's choice (same computation; float results may differ in the
  last bits); a process-wide flag (``python -m sb3_gaara.study --cudnn-benchmark``);
* ``GAARAPolicy(conv_dtype="bfloat16")``: the convolutions in mixed precision (opt-in: other numbers).

This script builds one fast-path GAARASAC per combination, captures each with the flag as it will stay, then
alternates their replayed updates (one each, in turn, so that a drift of the machine weighs on all alike), and
times SB3's eager ``SAC("CnnPolicy")`` with the flag off and on as the reference. It profiles the eager float32
update (the kernels that a replay runs, by total GPU time; that update samples from host memory, so its profile
also shows the batch's copies to the GPU, which the fast path does not make). Then it measures end-to-end
environment steps per second on dmc-cheetah-run with the faster cudnn.benchmark setting, in float32 and in
bfloat16, each without and with ``overlap_env_step`` (each update begun before the env step, so that the GPU
updates while the host steps the simulator and renders; same results). TF32 matrix products
(``python -m sb3_gaara.study --tf32``) are no longer measured here: on the H100 they gave nothing end to end
(195.1 against 196.6 env steps/s in float32, docs/benchmarks/cuda-h100-options.txt). It prints a report and
writes JSON; ``--choice FILE`` writes ``CUDNN_BENCHMARK=0|1`` for a shell script to source.

    MUJOCO_GL=egl python scripts/gpu_speed_options.py --json options.json --profile profile.txt --choice choice.env

On a CPU (``--device cpu --quick``) it runs the same code without graphs, as a rehearsal of the script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch as th
from stable_baselines3 import SAC

from sb3_gaara.benchmark import _synchronize, bench_env_steps, gpu_facts, stacked_random_env, step_parts_line
from sb3_gaara.common.durability import write_text_atomic
from sb3_gaara.gaara.gaara_sac import GAARASAC

#: (name, cudnn.benchmark, conv_dtype) of the fast-path models, in the order they are built
SETTINGS = (
    ("float32", False, "float32"),
    ("bfloat16", False, "bfloat16"),
    ("float32 + cudnn.benchmark", True, "float32"),
    ("bfloat16 + cudnn.benchmark", True, "bfloat16"),
)
#: (name, conv_dtype, overlap_env_step) of the end-to-end runs
END_TO_END_SETTINGS = (
    ("float32", "float32", False),
    ("float32 + overlap_env_step", "float32", True),
    ("bfloat16", "bfloat16", False),
    ("bfloat16 + overlap_env_step", "bfloat16", True),
)


def _filled_model(algo: type, device: th.device, batch_size: int, filled: int, **kwargs: Any) -> Any:
    model = algo(
        "CnnPolicy",
        stacked_random_env(0),
        buffer_size=filled + 1,
        learning_starts=filled,
        batch_size=batch_size,
        seed=0,
        device=device,
        **kwargs,
    )
    model.learn(total_timesteps=filled)
    return model


def _timed_update(model: Any, batch_size: int) -> float:
    _synchronize(model.device)
    start = time.perf_counter()
    model.train(gradient_steps=1, batch_size=batch_size)
    _synchronize(model.device)
    return time.perf_counter() - start


def _figures(durations: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(durations), "min_s": min(durations), "repeats": len(durations)}


def update_times(device: th.device, batch_size: int, steps: int, warmup: int, filled: int) -> dict[str, Any]:
    """Replayed update times of the fast path under each of :data:`SETTINGS`, and SB3's eager SAC under each flag."""
    graphs = device.type == "cuda"
    results: dict[str, Any] = {}
    sac_durations: dict[str, list[float]] = {}
    models: dict[str, GAARASAC] = {}
    for flag in (False, True):
        th.backends.cudnn.benchmark = flag
        # SB3's eager SAC keeps choosing kernels at every call: timed while the flag has this value.
        sac = _filled_model(SAC, device, batch_size, filled)
        sac_durations[f"SAC, cudnn.benchmark {'on' if flag else 'off'}"] = [
            _timed_update(sac, batch_size) for _ in range(warmup + steps)
        ][warmup:]
        del sac
        for name, setting_flag, conv_dtype in SETTINGS:
            if setting_flag != flag:
                continue
            model = _filled_model(
                GAARASAC, device, batch_size, filled, cuda_graphs=graphs, policy_kwargs=dict(conv_dtype=conv_dtype)
            )
            for _ in range(warmup):  # each phase runs eagerly once, then is captured (with the flag as now)
                model.train(gradient_steps=1, batch_size=batch_size)
            models[name] = model
    durations: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(steps):
        for name, model in models.items():
            durations[name].append(_timed_update(model, batch_size))
    for name, values in {**durations, **sac_durations}.items():
        results[name] = _figures(values)
    th.backends.cudnn.benchmark = False
    return results


def profile_eager_update(device: th.device, batch_size: int, steps: int, filled: int, rows: int) -> str:
    """The kernels of ``steps`` eager float32 updates, by total GPU time (CPU time on a CPU)."""
    from torch.profiler import ProfilerActivity, profile

    model = _filled_model(GAARASAC, device, batch_size, filled)
    for _ in range(4):
        model.train(gradient_steps=1, batch_size=batch_size)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    _synchronize(device)
    with profile(activities=activities) as profiler:
        for _ in range(steps):
            model.train(gradient_steps=1, batch_size=batch_size)
        _synchronize(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = profiler.key_averages().table(sort_by=sort_by, row_limit=rows, max_name_column_width=70)
    return f"{steps} eager float32 GAARASAC updates, batch {batch_size}, sorted by {sort_by}\n{table}"


def report(results: dict[str, Any]) -> str:
    lines = [f"GAARASAC fast-path update by GPU setting ({results['device']}; batch {results['batch_size']})"]
    if "gpu" in results:
        gpu = results["gpu"]
        lines.append(f"GPU {gpu['name']}, CUDA {gpu['cuda']}, cuDNN {gpu['cudnn']}")
    updates = results["update"]
    sac_off = updates["SAC, cudnn.benchmark off"]["median_s"]
    for name, figures in updates.items():
        ratio = figures["median_s"] / sac_off
        lines.append(
            f"  {name:32s} {figures['median_s'] * 1e3:7.2f} ms (min {figures['min_s'] * 1e3:.2f})  {ratio:.2f}x SB3 SAC eager"
        )
    lines.append(f"fastest float32 setting: cudnn.benchmark {'on' if results['cudnn_benchmark'] else 'off'}")
    runs = results.get("env_steps", {})
    if runs:
        lines.append("end to end, dmc-cheetah-run, one fast-path run each (cudnn.benchmark as chosen), env steps/s")
    for name, env in runs.items():
        lines += env_run_lines(name, env)
    return "\n".join(lines)


def env_run_lines(name: str, env: dict[str, Any]) -> list[str]:
    """One end-to-end run's lines of the report: its rate, and where a training agent step's time goes."""
    if "skipped" in env:
        return [f"  {name:32s} skipped ({env['skipped']})"]
    began = ""
    if env.get("overlap_env_step"):  # absent from the JSON of runs before the option
        began = f", {env['overlapped_updates']} of them begun before the env step"
    return [
        f"  {name:32s} training {env['train_env_steps_per_s']:7.1f}  (random warm-up "
        f"{env['collect_env_steps_per_s']:.1f}; {env['train_agent_steps']} agent steps, 1 update each{began})",
        f"  {'':32s}   one agent step: {step_parts_line(env['train_ms_per_agent_step'])}",
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="a few steps of each (a CPU rehearsal)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--profile", help="write the profile's table here")
    parser.add_argument("--choice", help="write CUDNN_BENCHMARK=0|1 (the faster float32 setting) here")
    parser.add_argument("--env-steps", type=int, default=1000, help="agent steps of the end-to-end training phase (0: none)")
    args = parser.parse_args(argv)
    device = th.device(args.device)
    # On CUDA at least 4 warm-up updates: each phase of the cadence runs eagerly once, then is captured.
    warmup = 4 if device.type == "cuda" else 1
    steps, filled, profiled = (2, 150, 1) if args.quick else (100, 300, 10)
    results: dict[str, Any] = {"device": str(device), "batch_size": args.batch_size}
    if device.type == "cuda":
        results["gpu"] = gpu_facts(device)
    started = time.perf_counter()
    results["update"] = update_times(device, args.batch_size, steps, warmup, filled)
    on, off = (results["update"][name]["median_s"] for name in ("float32 + cudnn.benchmark", "float32"))
    results["cudnn_benchmark"] = on < off
    if args.choice:
        write_text_atomic(args.choice, f"CUDNN_BENCHMARK={int(results['cudnn_benchmark'])}\n")
    print(report(results), flush=True)
    if args.profile:
        write_text_atomic(args.profile, profile_eager_update(device, args.batch_size, profiled, filled, rows=40))
    if args.env_steps > 0:
        th.backends.cudnn.benchmark = results["cudnn_benchmark"]
        random_steps = 100 if args.quick else 1000
        results["env_steps"] = {}
        for name, conv_dtype, overlap_env_step in END_TO_END_SETTINGS:
            results["env_steps"][name] = bench_env_steps(
                random_steps,
                args.env_steps,
                device,
                storage_device="auto" if device.type == "cuda" else None,
                cuda_graphs=device.type == "cuda",
                conv_dtype=conv_dtype,
                overlap_env_step=overlap_env_step,
            )
            print("\n".join(env_run_lines(name, results["env_steps"][name])), flush=True)
        th.backends.cudnn.benchmark = False
    results["seconds"] = time.perf_counter() - started
    print(report(results))
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
