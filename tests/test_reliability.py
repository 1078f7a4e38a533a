"""Reliability for runs that last days: loads that fail clearly, exact resumes, saves that survive a kill,
Ctrl-C that keeps the model, divergence stopped at its update, and seeded runs that repeat.

The save/load equality of each learned component and the construction errors live in ``test_gaara_sac.py``
and ``test_errors.py``; this file adds what a long run needs on top of them.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import numpy as np
import pytest
import torch as th
from conftest import BATCH_SIZE, LEARNING_STARTS, OBS_SHAPE, RecordingLogger, assert_same
from gymnasium import spaces

import sb3_gaara.gaara.auxiliary_losses as callbacks_module
from sb3_gaara import GAARASAC, AugmentedPixelReplayBuffer
from sb3_gaara.common.buffers import ZERO_SLOT
from sb3_gaara.gaara.comparison import anneal_comparison_lambda

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def optimizers(model: GAARASAC) -> dict[str, th.optim.Optimizer]:
    found = {"actor": model.actor.optimizer, "critic": model.critic.optimizer, "ent_coef": model.ent_coef_optimizer}
    found.update({f"auxiliary.{name}": callback.optimizer for name, callback in model.auxiliary_losses.items()})
    return found


def training_state(model: GAARASAC) -> dict[str, Any]:
    """Everything a continued run depends on: tensors, optimizer moments, annealed weight and counters."""
    return {
        "policy": model.policy.state_dict(),
        "log_ent_coef": model.log_ent_coef,
        "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers(model).items()},
        "comparison_lambda": model.comparison_lambda,
        "_n_updates": model._n_updates,
        "skipped_updates": model.skipped_updates,
        "num_timesteps": model.num_timesteps,
    }


def reseed(seed: int) -> None:
    th.manual_seed(seed)
    np.random.seed(seed)


def nan_rewards_from(model: GAARASAC, monkeypatch: pytest.MonkeyPatch, first: int, last: int | None = None) -> None:
    """Make the rewards of the ``first``-th to ``last``-th drawn batches (1-based, counted from now) NaN.

    Patched where every update draws its transitions (``sample_transitions``; ``sample`` is it, then ``crop``)."""
    sample_transitions = model.replay_buffer.sample_transitions
    calls = 0

    def nan_sample_transitions(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        transitions = sample_transitions(*args, **kwargs)
        if first <= calls and (last is None or calls <= last):
            transitions = transitions._replace(rewards=np.full_like(transitions.rewards, math.nan))
        return transitions

    monkeypatch.setattr(model.replay_buffer, "sample_transitions", nan_sample_transitions)


def python_env() -> dict[str, str]:
    """Environment of the child interpreters: this checkout first, one thread (the tests fork and kill)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), str(TESTS_DIR), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    env.pop("SB3_GAARA_ZOO_HOOK", None)
    return env


def interruptible() -> None:
    """``preexec_fn`` of a child that a test interrupts: SIGINT back to its default disposition.

    A shell without job control starts background jobs (``make test &``, some CI runners) with SIGINT ignored, and
    children inherit that; Python then installs no KeyboardInterrupt handler and Ctrl-C would do nothing. A user's
    terminal has the default, which this restores.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def keyboard_interrupt_on_sigint():
    """SIGINT raises KeyboardInterrupt in this process, as in a terminal, even when the test run ignores it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class LineReader:
    """Lines of a child's stdout, read by a thread so that the test can wait for one with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: Queue[str] = Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: [self.lines.put(line) for line in stdout], daemon=True).start()

    def wait_for(self, pattern: str, timeout: float) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got:\n{''.join(self.seen)}") from None
            self.seen.append(line)
            if re.search(pattern, line):
                return line


# --------------------------------------------------------------------------------------------------
# Loading onto another environment
# --------------------------------------------------------------------------------------------------


def test_loading_onto_another_frame_stack_names_both_observation_shapes(make_model, make_env, tmp_path):
    # The decoder reconstructs 6 channels (2 stacked RGB frames); an env stacking 3 frames gives 9. SB3's
    # space check refuses it before any network sees an image, naming both shapes.
    make_model().save(tmp_path / "model.zip")
    three_frames = make_env(observation_space=spaces.Box(0, 255, (9, 20, 20), dtype=np.uint8))
    with pytest.raises(ValueError, match=re.escape("(6, 20, 20), uint8) != Box(0, 255, (9, 20, 20), uint8)")) as error:
        GAARASAC.load(tmp_path / "model.zip", env=three_frames, device="cpu")
    assert "stacks as many frames as during training" in str(error.value)
    model = GAARASAC.load(tmp_path / "model.zip", device="cpu")
    with pytest.raises(ValueError, match=r"Unexpected observation shape \(9, 20, 20\).*please use \(6, 20, 20\)"):
        model.predict(np.zeros((9, 20, 20), dtype=np.uint8))


def test_loading_onto_channel_last_frames_of_the_same_images(make_model, make_env, tmp_path):
    model = make_model()
    model.learn(total_timesteps=LEARNING_STARTS + 2)
    model.save(tmp_path / "model.zip")
    channel_last = make_env(observation_space=spaces.Box(0, 255, (20, 20, 6), dtype=np.uint8))
    loaded = GAARASAC.load(tmp_path / "model.zip", env=channel_last, device="cpu")  # SB3 transposes on load
    assert loaded.get_env().observation_space.shape == OBS_SHAPE
    obs = np.random.default_rng(0).integers(0, 256, (3, *OBS_SHAPE), dtype=np.uint8)
    expected = model.predict(obs, deterministic=True)[0]
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
    np.testing.assert_array_equal(loaded.predict(obs.transpose(0, 2, 3, 1), deterministic=True)[0], expected)


# --------------------------------------------------------------------------------------------------
# Exact resume
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("updates_before_save", [3, 4])  # 3: the next update skips the actor and the targets
def test_training_continued_after_load_is_bit_identical(filled_model, make_env, tmp_path, updates_before_save):
    original = filled_model(comparison_lambda_decay=0.01)
    original.train(gradient_steps=updates_before_save, batch_size=BATCH_SIZE)
    original.save(tmp_path / "model.zip")
    original.save_replay_buffer(tmp_path / "buffer.pkl")
    at_save = training_state(original)
    assert at_save["comparison_lambda"] == pytest.approx(1.0 - 0.01 * updates_before_save)

    def load() -> GAARASAC:
        model = GAARASAC.load(tmp_path / "model.zip", env=make_env(), device="cpu")
        model.load_replay_buffer(tmp_path / "buffer.pkl")
        model.set_logger(RecordingLogger())
        return model

    resumed = load()
    assert_same(training_state(resumed), at_save, "after load")
    for model in (original, resumed):
        reseed(7)
        model.train(gradient_steps=5, batch_size=BATCH_SIZE)
    assert_same(training_state(resumed), training_state(original), "after 5 more updates")
    assert original._n_updates == updates_before_save + 5
    assert original.comparison_lambda == pytest.approx(1.0 - 0.01 * (updates_before_save + 5))

    # The comparison can fail: a resume one update out of phase (actor and targets on the other steps) differs.
    out_of_phase = load()
    out_of_phase._n_updates += 1
    reseed(7)
    out_of_phase.train(gradient_steps=5, batch_size=BATCH_SIZE)
    assert not th.equal(out_of_phase.actor.mu.weight, original.actor.mu.weight)


@pytest.mark.parametrize("storage_device", [None, "cpu"])
def test_replay_buffer_round_trips_exactly_through_the_model(make_model, tmp_path, storage_device):
    kwargs = dict(buffer_size=16, learning_starts=1_000)  # 27 steps wrap the 16 transitions: freed slots reused
    if storage_device is not None:
        kwargs["replay_buffer_kwargs"] = dict(storage_device=storage_device)
    model = make_model(**kwargs)
    model.learn(total_timesteps=27)
    model.save_replay_buffer(tmp_path / "buffer")  # SB3 appends .pkl
    other = make_model(**kwargs, seed=1)
    other.load_replay_buffer(tmp_path / "buffer.pkl")
    saved, loaded = model.replay_buffer, other.replay_buffer
    assert isinstance(loaded, AugmentedPixelReplayBuffer) and loaded is not saved
    assert saved.full, "the test should cover a buffer that has wrapped around"

    def contents(buffer: AugmentedPixelReplayBuffer) -> dict[str, Any]:
        assert buffer._frames is not None and buffer._frame_refs is not None
        used = buffer._frames[: buffer._n_frame_slots]
        return {
            **{name: getattr(buffer, name) for name in ("actions", "rewards", "dones", "timeouts")},
            **{name: getattr(buffer, name) for name in ("obs_frame_index", "next_obs_frame_index", "_last_next_frames")},
            "frames": used.numpy() if isinstance(used, th.Tensor) else used,
            "refs": buffer._frame_refs[: buffer._n_frame_slots],
            "free": list(buffer._free_slots),
            "scalars": [buffer.pos, buffer.full, buffer._n_frame_slots, buffer._frame_capacity, buffer.frame_stack],
            "settings": [buffer.image_size, buffer.anchor_crop, str(buffer.storage_device), str(buffer.device)],
            "last_next_index": buffer._last_next_index,
        }

    assert_same(contents(loaded), contents(saved), "buffer")

    def sample(buffer: AugmentedPixelReplayBuffer) -> tuple[th.Tensor, ...]:
        reseed(3)
        return tuple(field for field in buffer.sample(BATCH_SIZE) if field is not None)

    assert_same(sample(loaded), sample(saved), "sample")
    # Adding after the load continues exactly, frame reuse included.
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (1, *OBS_SHAPE), dtype=np.uint8)
    for _ in range(5):
        next_obs = np.concatenate([obs[:, 3:], rng.integers(0, 256, (1, 3, 20, 20), dtype=np.uint8)], axis=1)
        action, reward = rng.uniform(-1, 1, (1, 2)).astype(np.float32), rng.normal(size=1).astype(np.float32)
        for buffer in (saved, loaded):
            buffer.add(obs, next_obs, action, reward, np.array([False]), [{}])
        obs = next_obs
    assert_same(contents(loaded), contents(saved), "buffer after adding")
    assert_same(sample(loaded), sample(saved), "sample after adding")


# --------------------------------------------------------------------------------------------------
# Crash safety
# --------------------------------------------------------------------------------------------------

# A supervisor process builds a tiny model, then forks checkpointing processes that save the model and its replay
# buffer to the same two paths in a loop, each save marked with its number (model: _n_updates, buffer: rewards[0]),
# and kills each with SIGKILL: at random moments, in the middle of writing the zip, and between the complete write
# and the rename. After every kill it keeps a copy of the two files and of the directory listing for the test.
KILL_SUPERVISOR = """
import json, os, select, shutil, signal, sys, time
import torch as th
th.set_num_threads(1)  # no thread pool before fork()
from conftest import FakeImageEnv, tiny_kwargs
from sb3_gaara import GAARASAC

folder, kills = sys.argv[1], json.loads(sys.argv[2])
model = GAARASAC("CnnPolicy", FakeImageEnv(), **tiny_kwargs(learning_starts=1000, buffer_size=100))
model.learn(total_timesteps=60)
model_path, buffer_path = os.path.join(folder, "model.zip"), os.path.join(folder, "buffer.pkl")


def checkpoint_forever(write, first, pause):
    def say(line):
        os.write(write, (line + "\\n").encode())

    if pause == "mid_write":  # stop after the first tensor file of the zip: the archive has no directory yet
        original_save = th.save

        def save_then_pause(*args, **kwargs):
            original_save(*args, **kwargs)
            say("paused")
            time.sleep(600)

        th.save = save_then_pause
    elif pause == "before_rename":  # the buffer's file is complete and flushed, not yet renamed
        original_fsync, calls = os.fsync, []

        def fsync_then_pause(fd):
            original_fsync(fd)
            calls.append(fd)
            if len(calls) == 2:
                say("paused")
                time.sleep(600)

        os.fsync = fsync_then_pause
    number = first
    while True:
        say(f"start {number}")
        model._n_updates = number
        model.replay_buffer.rewards[0, 0] = number
        model.save(model_path)
        model.save_replay_buffer(buffer_path)
        say(f"done {number}")
        number += 1


def lines_until(read, deadline, stop):
    text = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([read], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(read, 65536)
        if not chunk:
            break
        text += chunk
        if stop is not None and stop in text.decode():
            break
    return text


report, next_number = [], 0
for index, kill in enumerate(kills):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            checkpoint_forever(write, next_number, kill["pause"])
        finally:
            os._exit(1)
    os.close(write)
    if kill["pause"]:
        text = lines_until(read, time.monotonic() + 60, "paused")
    elif kill["after_first_save"]:
        text = lines_until(read, time.monotonic() + 60, "done")
        text += lines_until(read, time.monotonic() + kill["delay"], None)
    else:
        text = lines_until(read, time.monotonic() + kill["delay"], None)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    text += lines_until(read, time.monotonic() + 5, None)  # what it wrote before dying
    os.close(read)
    lines = text.decode().split()
    starts = [int(n) for word, n in zip(lines, lines[1:]) if word == "start"]
    dones = [int(n) for word, n in zip(lines, lines[1:]) if word == "done"]
    in_flight = starts[-1] if starts and (not dones or starts[-1] > dones[-1]) else None
    snapshot = os.path.join(folder, f"kill{index}")
    os.mkdir(snapshot)
    for path in (model_path, buffer_path):
        if os.path.exists(path):
            shutil.copy(path, snapshot)
    listing = sorted(os.listdir(folder))
    report.append({"pid": pid, "dones": dones, "in_flight": in_flight, "listing": listing, "paused": "paused" in lines})
    next_number = max(starts, default=next_number) + 1
print(json.dumps(report))
"""


def test_sigkill_during_checkpointing_leaves_the_previous_checkpoint_loadable(tmp_path, make_env):
    rng = np.random.default_rng(0)
    kills = [
        {"pause": None, "after_first_save": True, "delay": 0.1},
        {"pause": "mid_write", "after_first_save": False, "delay": 0},
        {"pause": "before_rename", "after_first_save": False, "delay": 0},
        *({"pause": None, "after_first_save": False, "delay": float(rng.uniform(0.05, 0.4))} for _ in range(5)),
    ]
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", KILL_SUPERVISOR, str(folder), json.dumps(kills)],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report) == len(kills)
    temporary = re.compile(r"^\.(model\.zip|buffer\.pkl)\.\d+\.tmp$")
    markers: list[tuple[int, int]] = []  # (model, buffer) after each kill
    complete: set[int] = set()  # checkpoints that may be at the paths: the last finished, and any in flight since
    for index, (kill, outcome) in enumerate(zip(kills, report, strict=True)):
        where = f"kill {index} ({kill['pause'] or 'at a random moment'}): {outcome}"
        if outcome["dones"]:
            complete = {outcome["dones"][-1]}
        complete |= {outcome["in_flight"]} - {None}
        snapshot = folder / f"kill{index}"
        model = GAARASAC.load(snapshot / "model.zip", env=make_env(), device="cpu")
        model.load_replay_buffer(snapshot / "buffer.pkl")
        assert model.replay_buffer.size() == 60, where
        model.predict(np.zeros(OBS_SHAPE, dtype=np.uint8))
        markers.append((model._n_updates, int(model.replay_buffer.rewards[0, 0])))
        # Each path holds one complete checkpoint, never a truncated one; the model is saved first.
        assert set(markers[-1]) <= complete and markers[-1][0] >= markers[-1][1], where
        # Killed saves leave hidden temporary files, which no load takes for a checkpoint.
        others = set(outcome["listing"]) - {"model.zip", "buffer.pkl"} - {f"kill{i}" for i in range(len(kills))}
        assert all(temporary.match(name) for name in others), where

    # The paused kills landed inside a save, where the previous file has to survive:
    # mid-write, the model's zip was half written (no central directory yet) and both files stayed as they were;
    mid_write = report[1]
    assert mid_write["paused"] and not mid_write["dones"] and markers[1] == markers[0], mid_write
    assert not zipfile.is_zipfile(folder / f".model.zip.{mid_write['pid']}.tmp")
    # before the rename, the new buffer was complete on disk, the new model in place, the previous buffer too.
    before_rename = report[2]
    assert before_rename["paused"] and markers[2] == (before_rename["in_flight"], markers[1][1]), before_rename
    assert f".buffer.pkl.{before_rename['pid']}.tmp" in before_rename["listing"], before_rename
    # The next save to the same paths deleted the temporary files of the killed processes: leftovers do not pile up.
    assert not (folder / f".buffer.pkl.{before_rename['pid']}.tmp").exists()
    leftovers = [name for name in os.listdir(folder) if temporary.match(name)]
    assert all(name.endswith(f".{report[-1]['pid']}.tmp") for name in leftovers), leftovers


def test_ctrl_c_inside_a_replay_buffer_add_waits_until_the_add_is_done(make_model, monkeypatch, keyboard_interrupt_on_sigint):
    # rl-zoo3 saves the replay buffer after a Ctrl-C and resumes from it. The frame store's reference counts are
    # updated in several statements; a KeyboardInterrupt between them would free slots that live transitions use.
    model = make_model(buffer_size=8, learning_starts=1_000)
    model.learn(total_timesteps=20)  # wrapped: each add releases the frames of the transition it overwrites
    buffer = model.replay_buffer
    write_frames = buffer._write_frames

    def write_frames_after_ctrl_c(*args: Any) -> None:
        signal.raise_signal(signal.SIGINT)  # after the overwritten transition dropped its references
        write_frames(*args)

    monkeypatch.setattr(buffer, "_write_frames", write_frames_after_ctrl_c)
    rng = np.random.default_rng(0)
    obs, next_obs = (rng.integers(0, 256, (1, *OBS_SHAPE), dtype=np.uint8) for _ in range(2))
    position = buffer.pos
    with pytest.raises(KeyboardInterrupt):
        buffer.add(obs, next_obs, np.zeros((1, 2), dtype=np.float32), np.ones(1), np.array([False]), [{}])
    assert buffer.pos == (position + 1) % buffer.buffer_size  # the add completed, then the interrupt came
    index = np.concatenate([buffer.obs_frame_index, buffer.next_obs_frame_index], axis=2).ravel()
    counts = np.bincount(index[index != ZERO_SLOT], minlength=buffer._n_frame_slots)
    assert buffer._frame_refs is not None
    np.testing.assert_array_equal(buffer._frame_refs[1 : buffer._n_frame_slots], counts[1:])
    assert not set(buffer._free_slots) & set(index.tolist())
    monkeypatch.undo()
    reseed(0)
    assert buffer.sample(BATCH_SIZE).observations.shape == (BATCH_SIZE, *OBS_SHAPE[:1], 16, 16)


CTRL_C_TRAINING = """
import sys
import torch as th
th.set_num_threads(1)
from stable_baselines3.common.callbacks import BaseCallback
from conftest import FakeImageEnv, tiny_kwargs
from sb3_gaara import GAARASAC


class SayWhenTraining(BaseCallback):
    def _on_step(self):
        if self.model._n_updates == 5:
            print("training", flush=True)
        return True


model = GAARASAC("CnnPolicy", FakeImageEnv(), **tiny_kwargs(comparison_lambda_decay=1e-3))
try:  # rl-zoo3's pattern (ExperimentManager.learn, then save_trained_model)
    model.learn(total_timesteps=10_000_000, callback=SayWhenTraining())
except KeyboardInterrupt:
    pass
model.save(sys.argv[1])
model.save_replay_buffer(sys.argv[2])
print("saved", model._n_updates, repr(model.comparison_lambda), model.num_timesteps, flush=True)
"""


def test_ctrl_c_during_learn_saves_a_model_that_resumes(tmp_path, make_env):
    process = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_TRAINING, str(tmp_path / "model.zip"), str(tmp_path / "buffer.pkl")],
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    try:
        reader = LineReader(process)
        reader.wait_for(r"^training", timeout=120)
        process.send_signal(signal.SIGINT)
        _, n_updates, comparison_lambda, num_timesteps = reader.wait_for(r"^saved", timeout=60).split()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    model = GAARASAC.load(tmp_path / "model.zip", env=make_env(), device="cpu")
    assert model._n_updates == int(n_updates) >= 5
    assert model.comparison_lambda == float(comparison_lambda) < 1.0
    assert model.num_timesteps == int(num_timesteps)
    assert all(bool(th.isfinite(p).all()) for p in model.policy.parameters())
    model.load_replay_buffer(tmp_path / "buffer.pkl")
    model.set_logger(RecordingLogger())
    model.learn(total_timesteps=3, reset_num_timesteps=False)
    assert model._n_updates == int(n_updates) + 3


@pytest.mark.slow
def test_rl_zoo_saves_on_ctrl_c_and_resumes_the_annealing_and_the_update_count(tmp_path):
    # rl-zoo3's ExperimentManager.learn catches KeyboardInterrupt for every algorithm; train then saves the model
    # (and the replay buffer with --save-replay-buffer). `-i` resumes from both.
    zoo = [sys.executable, "-m", "sb3_gaara.zoo", "train", "--algo", "gaara_sac", "--env", "dmc-cartpole-swingup"]
    tiny = [
        "--env-kwargs", "episode_length:80", "-f", "logs", "--num-threads", "1", "--seed", "0", "--save-replay-buffer",
        "--hyperparams", "learning_starts:20", "buffer_size:300", "batch_size:4", "comparison_lambda_decay:0.001",
    ]  # fmt: skip
    env = {**python_env(), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    process = subprocess.Popen(
        [*zoo, "-n", "1000000", *tiny],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=interruptible,
    )
    try:
        reader = LineReader(process)
        reader.wait_for(r"n_updates", timeout=300)  # SB3's log table: training has started
        process.send_signal(signal.SIGINT)
        reader.wait_for(r"^Saving to", timeout=120)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
    run = tmp_path / "logs" / "gaara_sac" / "dmc-cartpole-swingup_1"
    interrupted = GAARASAC.load(run / "dmc-cartpole-swingup.zip", device="cpu", buffer_size=1)
    assert interrupted._n_updates > 0 and (run / "replay_buffer.pkl").is_file()

    subprocess.run(
        [*zoo, "-n", "40", "-i", str(run / "dmc-cartpole-swingup.zip"), *tiny],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    resumed = GAARASAC.load(tmp_path / "logs" / "gaara_sac" / "dmc-cartpole-swingup_2" / "dmc-cartpole-swingup.zip")
    # rl-zoo3 restarts num_timesteps: the 20 learning_starts steps come again before the updates resume.
    new_updates = resumed._n_updates - interrupted._n_updates
    assert new_updates == 40 - 20
    expected = interrupted.comparison_lambda
    for _ in range(new_updates):
        expected = anneal_comparison_lambda(expected, 0.001, resumed.comparison_lambda_min)
    assert resumed.comparison_lambda == expected


def test_model_file_tensors_load_with_weights_only_and_what_else_is_unpickled(make_model, tmp_path):
    # The README says which parts of a model file are pickles; this pins it down.
    make_model().save(tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        tensor_files = [name for name in archive.namelist() if name.endswith(".pth")]
        assert {"policy.pth", "auxiliary_losses.pth", "auxiliary_losses.comparison.optimizer.pth"} <= set(tensor_files)
        for name in tensor_files:  # SB3's load uses th.load(..., weights_only=True): no code runs
            with archive.open(name) as file:
                th.load(file, map_location="cpu", weights_only=True)
        data = json.loads(archive.read("data"))
    pickled = {key for key, value in data.items() if isinstance(value, dict) and ":serialized:" in value}
    assert pickled == {"action_space", "lr_schedule", "observation_space", "policy_class", "replay_buffer_class", "train_freq"}


# --------------------------------------------------------------------------------------------------
# Divergence
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gradient_steps", [1, 6])
def test_nonfinite_reward_stops_training_naming_the_critic_loss_and_its_update(filled_model, monkeypatch, gradient_steps):
    model = filled_model()
    model.train(gradient_steps=2, batch_size=BATCH_SIZE)
    nan_rewards_from(model, monkeypatch, first=2)  # update #4
    with pytest.raises(FloatingPointError, match=r"train/critic_loss became nan at update #4\b.*rewards"):
        for _ in range(6 // gradient_steps):
            model.train(gradient_steps=gradient_steps, batch_size=BATCH_SIZE)


def test_nonfinite_auxiliary_loss_is_reported_at_its_own_update(filled_model, monkeypatch):
    # The reconstruction runs every 2nd update (#1, #3, #5) and the actor every 2nd: the error must locate the
    # first non-finite loss by update, not by position in the per-loss lists. Here the NaN target poisons the
    # encoder at #3, the critic at #4 and the actor's distribution at #5.
    model = filled_model(decoder_update_freq=2)
    target = callbacks_module.preprocess_reconstruction_target
    calls = 0

    def nan_target(obs: th.Tensor, *args: Any, **kwargs: Any) -> th.Tensor:
        nonlocal calls
        calls += 1
        result = target(obs, *args, **kwargs)
        return th.full_like(result, math.nan) if calls == 2 else result

    monkeypatch.setattr(callbacks_module, "preprocess_reconstruction_target", nan_target)
    with pytest.raises(FloatingPointError, match=r"train/reconstruction_loss became nan at update #3\b"):
        model.train(gradient_steps=6, batch_size=BATCH_SIZE)


def test_nonfinite_parameter_stops_training_naming_the_parameter(filled_model, monkeypatch):
    model = filled_model()
    step = model.actor.optimizer.step

    def overflowing_step(*args: Any, **kwargs: Any) -> Any:
        result = step(*args, **kwargs)
        with th.no_grad():
            model.actor.mu.weight[0, 0] = math.inf
        return result

    monkeypatch.setattr(model.actor.optimizer, "step", overflowing_step)
    with pytest.raises(FloatingPointError, match=r"Parameter policy\.actor\.mu\.weight is no longer finite after update #1\b"):
        model.train(gradient_steps=1, batch_size=BATCH_SIZE)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_the_parameter_check_names_each_kind_of_nonfinite_value_and_only_those(make_model, value):
    model = make_model()
    assert model._first_nonfinite_parameter() is None
    with th.no_grad():
        # Finite, but their sum overflows float32: the quick check of the sums fails and the search clears them.
        model.critic.q_networks[1][0].weight.fill_(3e38)
        assert not th.isfinite(model.critic.q_networks[1][0].weight.sum())
        assert model._first_nonfinite_parameter() is None
        model.policy.decoder.fc.bias[3] = value
    assert model._first_nonfinite_parameter() == "policy.decoder.fc.bias"


def test_skipping_nonfinite_updates_counts_logs_and_keeps_the_parameters_finite(filled_model, monkeypatch):
    model = filled_model(skip_nonfinite_updates=True)
    nan_rewards_from(model, monkeypatch, first=3, last=4)  # only the critic reads rewards: 2 skipped critic steps
    model.train(gradient_steps=6, batch_size=BATCH_SIZE)
    assert model._n_updates == 6 and model.skipped_updates == 2
    assert model.logger.history["train/skipped_updates"] == [2]
    assert math.isfinite(model.logger.history["train/critic_loss"][-1])  # the mean over the applied steps
    assert all(bool(th.isfinite(p).all()) for p in [*model.policy.parameters(), model.log_ent_coef])
    # The skipped steps were not applied: Adam stepped the critic 4 times and the actor on its 3 steps.
    critic_steps = {float(state["step"]) for state in model.critic.optimizer.state.values()}
    actor_steps = {float(state["step"]) for state in model.actor.optimizer.state.values()}
    assert critic_steps == {4.0} and actor_steps == {3.0}
    model.train(gradient_steps=2, batch_size=BATCH_SIZE)  # and training goes on
    assert model.skipped_updates == 2 and model.logger.history["train/skipped_updates"] == [2, 2]


# --------------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_first_updates_and_another_seed_does_not(make_model):
    def run(seed: int) -> dict[str, Any]:
        model = make_model(seed=seed)
        model.learn(total_timesteps=LEARNING_STARTS + 8)
        assert model._n_updates == 8
        return training_state(model)

    first = run(0)
    assert_same(run(0), first, "same seed")
    other = run(1)
    assert not th.equal(other["policy"]["actor.mu.weight"], first["policy"]["actor.mu.weight"])


def test_save_removes_temporary_files_of_dead_processes_only(make_model, tmp_path):
    model = make_model()
    destination = tmp_path / "model.zip"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.zip.{dead.pid}.tmp"
    live = tmp_path / f".model.zip.{os.getppid()}.tmp"  # the parent of this process is alive
    other = tmp_path / f".other.zip.{dead.pid}.tmp"
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    model.save(destination)
    assert not stale.exists()
    assert live.exists() and other.exists()
    assert GAARASAC.load(destination, device="cpu").image_size == model.image_size
