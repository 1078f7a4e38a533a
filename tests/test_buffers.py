"""AugmentedPixelReplayBuffer: bit-identical to SB3's full-stack ReplayBuffer, while storing each frame once."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import FakeImageEnv, tiny_model
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize

from sb3_gaara.common.buffers import (
    CONTRASTIVE_VIEWS,
    ZERO_SLOT,
    AugmentedPixelReplayBuffer,
    AugmentedReplayBufferSamples,
)
from sb3_gaara.common.crops import center_crop, crop, random_crop_offsets

FRAME_SHAPE = (3, 12, 12)
IMAGE_SIZE = 8
ACTION_SPACE = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)


class FrameEnv(gym.Env):
    """Random RGB frames; episodes of ``min_length..max_length`` steps ending terminated or truncated at random.

    Some frames are black (they then share the zero slot with ``VecFrameStack``'s padding) and some repeat the
    previous frame (byte-equal frames at other stack positions must not confuse the buffer).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, frame_shape: tuple[int, ...] = FRAME_SHAPE, min_length: int = 1, max_length: int = 5) -> None:
        super().__init__()
        self.observation_space = spaces.Box(0, 255, frame_shape, dtype=np.uint8)
        self.action_space = ACTION_SPACE
        self.min_length, self.max_length = min_length, max_length
        self._frame = np.zeros(frame_shape, dtype=np.uint8)

    def _next_frame(self) -> np.ndarray:
        draw = self.np_random.random()
        if draw < 0.1:
            self._frame = np.zeros_like(self._frame)
        elif draw >= 0.25:
            self._frame = self.np_random.integers(0, 256, self._frame.shape, dtype=np.uint8)
        return self._frame.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._step, self._length = 0, int(self.np_random.integers(self.min_length, self.max_length + 1))
        return self._next_frame(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._step += 1
        ended = self._step >= self._length
        terminated = ended and bool(self.np_random.random() < 0.5)
        return self._next_frame(), float(self.np_random.normal()), terminated, ended and not terminated, {}


def make_vec_env(n_envs: int = 1, frame_stack: int = 3, seed: int = 0, **env_kwargs: Any) -> VecFrameStack | DummyVecEnv:
    venv: VecFrameStack | DummyVecEnv = DummyVecEnv([lambda: FrameEnv(**env_kwargs) for _ in range(n_envs)])
    if frame_stack > 1:
        venv = VecFrameStack(venv, frame_stack)
    venv.seed(seed)
    return venv


def transitions(venv: VecFrameStack | DummyVecEnv, n_steps: int, seed: int = 0) -> Iterator[tuple]:
    """``add()`` arguments as SB3's off-policy loop builds them: terminal observations in ``next_obs``."""
    rng = np.random.default_rng(seed)
    obs = venv.reset()
    for _ in range(n_steps):
        actions = rng.uniform(-1, 1, (venv.num_envs, 2)).astype(np.float32)
        new_obs, rewards, dones, infos = venv.step(actions)
        next_obs = new_obs.copy()
        for i, done in enumerate(dones):
            if done:
                next_obs[i] = infos[i]["terminal_observation"]
        yield obs, next_obs, actions, rewards, dones, infos
        obs = new_obs


def make_pair(
    observation_space: spaces.Box, buffer_size: int, n_envs: int = 1, **kwargs: Any
) -> tuple[AugmentedPixelReplayBuffer, ReplayBuffer]:
    """Our buffer and SB3's, with the same SB3 arguments; ours draws both contrastive views unless told otherwise."""
    kwargs = {"contrastive_views": CONTRASTIVE_VIEWS, **kwargs}
    sb3_kwargs = {key: kwargs.pop(key) for key in ("optimize_memory_usage", "handle_timeout_termination") if key in kwargs}
    ours = AugmentedPixelReplayBuffer(
        buffer_size,
        observation_space,
        ACTION_SPACE,
        device="cpu",
        n_envs=n_envs,
        image_size=IMAGE_SIZE,
        **sb3_kwargs,
        **kwargs,
    )
    reference = ReplayBuffer(buffer_size, observation_space, ACTION_SPACE, device="cpu", n_envs=n_envs, **sb3_kwargs)
    return ours, reference


def assert_same_sample(ours: AugmentedPixelReplayBuffer, reference: ReplayBuffer, seed: int, batch_size: int = 16) -> None:
    """Seeded alike, our sample is SB3's sample cropped by ``sb3_gaara.common.crops``, bit for bit: the center crops,
    then the random crops of the contrastive views the buffer draws (the positive's, then a random anchor's), and no
    other random draw; the views it does not draw are ``None``."""
    np.random.seed(seed)
    th.manual_seed(seed)
    sample = ours.sample(batch_size)
    torch_state = th.get_rng_state()
    np.random.seed(seed)
    expected = reference.sample(batch_size)
    th.manual_seed(seed)
    device = ours.storage_device or "cpu"
    height, width = ours.frame_shape[1:]
    views = ours.contrastive_views
    drawn = [view for view in ("positive", "anchor") if view in views and (view, ours.anchor_crop) != ("anchor", "center")]
    offsets = {view: random_crop_offsets(batch_size, height, width, IMAGE_SIZE, device=device) for view in drawn}
    assert th.equal(th.get_rng_state(), torch_state)  # the same torch draws, no more
    assert isinstance(sample, AugmentedReplayBufferSamples)
    pairs = {
        "observations": center_crop(expected.observations, IMAGE_SIZE),
        "next_observations": center_crop(expected.next_observations, IMAGE_SIZE),
        "actions": expected.actions,
        "rewards": expected.rewards,
        "dones": expected.dones,
    }
    if "positive" in views:
        pairs["obs_pos"] = crop(expected.observations, *offsets["positive"], IMAGE_SIZE)
    if "anchor" in views:
        anchor = offsets.get("anchor")
        pairs["obs_anchor"] = pairs["observations"] if anchor is None else crop(expected.observations, *anchor, IMAGE_SIZE)
    for name, view in (("obs_pos", "positive"), ("obs_anchor", "anchor")):
        assert (getattr(sample, name) is None) == (view not in views), name
    for name, value in pairs.items():
        got = getattr(sample, name)
        assert got.dtype == value.dtype and got.device == th.device("cpu"), name
        np.testing.assert_array_equal(got.numpy(), value.numpy(), err_msg=name)


def assert_same_storage(ours: AugmentedPixelReplayBuffer, reference: ReplayBuffer) -> None:
    """Every stored stack equals SB3's, at every position and env."""
    size = ours.size()
    positions = np.repeat(np.arange(size), ours.n_envs)
    envs = np.tile(np.arange(ours.n_envs), size)
    obs, next_obs = ours.get_stacks(positions, envs)
    if reference.optimize_memory_usage:
        # SB3 keeps the newest next observation in the slot of the oldest observation, which it never samples.
        valid = positions != ours.pos if ours.full else positions < size
        np.testing.assert_array_equal(obs[valid], reference.observations[positions, envs][valid])
        np.testing.assert_array_equal(next_obs[valid], reference.observations[(positions + 1) % ours.buffer_size, envs][valid])
    else:
        np.testing.assert_array_equal(obs, reference.observations[positions, envs])
        np.testing.assert_array_equal(next_obs, reference.next_observations[positions, envs])


def assert_slots_consistent(buffer: AugmentedPixelReplayBuffer) -> None:
    """Reference counts match the live transitions; no free slot is referenced (so none is overwritten while live)."""
    assert buffer._frame_refs is not None
    live = slice(None) if buffer.full else slice(0, buffer.pos)
    referenced = np.concatenate([buffer.obs_frame_index[live].ravel(), buffer.next_obs_frame_index[live].ravel()])
    referenced = referenced[referenced != ZERO_SLOT]
    counts = np.bincount(referenced, minlength=buffer._n_frame_slots)
    np.testing.assert_array_equal(buffer._frame_refs[1 : buffer._n_frame_slots], counts[1 : buffer._n_frame_slots])
    free = np.array(buffer._free_slots, dtype=np.int64)
    assert len(np.unique(free)) == len(free) and not np.isin(free, referenced).any()


def step_seed(*values: int) -> int:
    return int(np.ravel_multi_index(values, (10, 10)))


@pytest.mark.parametrize("storage_device", [None, "cpu"])
@pytest.mark.parametrize(
    "n_envs, frame_stack, sb3_kwargs",
    [
        (1, 3, {}),
        (2, 3, {}),
        (2, 1, {}),
        (2, 3, {"optimize_memory_usage": True, "handle_timeout_termination": False}),
        (1, 2, {"handle_timeout_termination": False}),
    ],
)
def test_bit_identical_to_sb3_replay_buffer(storage_device, n_envs, frame_stack, sb3_kwargs):
    """Episodes of 1..5 steps, terminations and truncations, the ring wrapping over 20 times."""
    venv = make_vec_env(n_envs, frame_stack, seed=n_envs + frame_stack)
    ours, reference = make_pair(venv.observation_space, 8 * n_envs, n_envs, storage_device=storage_device, **sb3_kwargs)
    for step, transition in enumerate(transitions(venv, 200, seed=step_seed(n_envs, frame_stack))):
        ours.add(*transition)
        reference.add(*transition)
        if step >= 2 and step % 7 == 0:
            assert_same_sample(ours, reference, seed=step)
    assert ours.full
    assert_same_storage(ours, reference)
    assert_slots_consistent(ours)


@pytest.mark.parametrize("views", [(), ("positive",), ("anchor",), CONTRASTIVE_VIEWS])
@pytest.mark.parametrize("anchor_crop", ["center", "random"])
def test_crops_match_sb3_sample(anchor_crop, views):
    venv = make_vec_env(2, 3)
    ours, reference = make_pair(venv.observation_space, 20, 2, anchor_crop=anchor_crop, contrastive_views=views)
    for transition in transitions(venv, 30):
        ours.add(*transition)
        reference.add(*transition)
    assert_same_sample(ours, reference, seed=1, batch_size=64)
    sample = ours.sample(4)
    assert sample.observations.shape == (4, 9, IMAGE_SIZE, IMAGE_SIZE)
    if "positive" in views:
        assert sample.obs_pos is not None and sample.obs_pos.shape == sample.observations.shape
    if "anchor" in views:
        assert sample.obs_anchor is not None and sample.obs_anchor.shape == sample.observations.shape
        assert (sample.obs_anchor is sample.observations) == (anchor_crop == "center")


@pytest.mark.parametrize("storage_device", [None, "cpu"])
def test_a_sample_without_views_draws_nothing_for_them(storage_device):
    """Without contrastive views a sample makes SB3's ``np.random`` draws and no torch draw; with them, the same
    ``np.random`` draws (the views' offsets come from torch) and one ``th.randint`` pair per random view."""
    venv = make_vec_env(2, 3)
    plain, reference = make_pair(venv.observation_space, 20, 2, contrastive_views=(), storage_device=storage_device)
    views, _ = make_pair(venv.observation_space, 20, 2, anchor_crop="random", storage_device=storage_device)
    for transition in transitions(venv, 30):
        for buffer in (plain, views, reference):
            buffer.add(*transition)
    states = {}
    for name, buffer in (("plain", plain), ("views", views), ("sb3", reference)):
        np.random.seed(3)
        th.manual_seed(3)
        torch_before = th.get_rng_state()
        buffer.sample(32)
        numpy_after = np.random.get_state()[1].copy()
        states[name] = (numpy_after, th.equal(th.get_rng_state(), torch_before))
    np.testing.assert_array_equal(states["plain"][0], states["sb3"][0])
    np.testing.assert_array_equal(states["views"][0], states["sb3"][0])
    assert states["plain"][1] and not states["views"][1]  # torch untouched without views, advanced with them
    sample = plain.sample(4)
    assert sample.obs_anchor is None and sample.obs_pos is None


def test_contrastive_views_are_checked():
    space = make_vec_env(1, 3).observation_space
    with pytest.raises(ValueError, match="contrastive_views must name"):
        AugmentedPixelReplayBuffer(10, space, ACTION_SPACE, image_size=IMAGE_SIZE, contrastive_views=("negative",))
    with pytest.raises(ValueError, match="write \\('anchor',\\)"):
        AugmentedPixelReplayBuffer(10, space, ACTION_SPACE, image_size=IMAGE_SIZE, contrastive_views="anchor")
    buffer = AugmentedPixelReplayBuffer(
        10, space, ACTION_SPACE, image_size=IMAGE_SIZE, contrastive_views=["positive", "anchor"]
    )
    assert buffer.contrastive_views == ("anchor", "positive")
    assert AugmentedPixelReplayBuffer(10, space, ACTION_SPACE, image_size=IMAGE_SIZE).contrastive_views == ()


@pytest.mark.parametrize("anchor_crop", ["center", "random"])
def test_cropping_every_frame_column_gives_the_sample(anchor_crop):
    """The CUDA-graph route (``sample_transitions``, then ``crop_views`` of the observations' and the next
    observations' slots side by side, a static shape) returns ``sample()`` bit for bit, seeded alike."""
    venv = make_vec_env(2, 3)
    ours, _ = make_pair(venv.observation_space, 20, 2, anchor_crop=anchor_crop, storage_device="cpu")
    for transition in transitions(venv, 30):
        ours.add(*transition)
    np.random.seed(5)
    th.manual_seed(5)
    expected = ours.sample(16)
    np.random.seed(5)
    th.manual_seed(5)
    drawn = ours.sample_transitions(16)
    index = th.as_tensor(np.concatenate([drawn.obs_index, drawn.next_obs_index], axis=1), dtype=th.long)
    small = [th.as_tensor(array) for array in (drawn.actions, drawn.dones, drawn.rewards)]
    got = ours.crop_views(index, 3, *small)
    for name in ("observations", "next_observations", "obs_anchor", "obs_pos", "actions", "dones", "rewards"):
        assert th.equal(getattr(got, name), getattr(expected, name)), name
    assert (got.obs_anchor is got.observations) == (anchor_crop == "center")


@pytest.mark.parametrize("storage_device", [None, "cpu"])
def test_arbitrary_add_data(storage_device):
    """No stacking relation at all: random stacks, some frames copied across positions, transitions and envs."""
    rng = np.random.default_rng(3)
    observation_space = spaces.Box(0, 255, (9, 12, 12), dtype=np.uint8)
    ours, reference = make_pair(observation_space, 10, 2, storage_device=storage_device)
    pool = rng.integers(0, 256, (6, 3, 12, 12), dtype=np.uint8)
    pool[0] = 0
    for step in range(60):
        # Frames drawn from a small pool: many byte-equal frames in places the buffer does not look at.
        obs = pool[rng.integers(0, len(pool), (2, 3))].reshape(2, 9, 12, 12)
        next_obs = pool[rng.integers(0, len(pool), (2, 3))].reshape(2, 9, 12, 12)
        if step % 3 == 0:
            next_obs[:, :6] = obs[:, 3:]
        args = (obs, next_obs, rng.normal(size=(2, 2)).astype(np.float32), rng.normal(size=2), rng.random(2) < 0.2)
        ours.add(*args, [{}, {}])
        reference.add(*args, [{}, {}])
        if step % 5 == 0:
            assert_same_sample(ours, reference, seed=step)
    assert_same_storage(ours, reference)
    assert_slots_consistent(ours)


def repeated_first_frame_transitions(n_steps: int, episode_length: int, stack: int = 3, seed: int = 0) -> Iterator[tuple]:
    """``add()`` arguments of stacks that repeat the first frame at reset (the papers' stacking), oldest first."""
    rng = np.random.default_rng(seed)

    def frame() -> np.ndarray:
        return rng.integers(0, 256, FRAME_SHAPE, dtype=np.uint8)

    frames = [frame()] * stack
    for step in range(n_steps):
        obs = np.concatenate(frames)[None]
        frames = [*frames[1:], frame()]
        next_obs = np.concatenate(frames)[None]
        truncated = (step + 1) % episode_length == 0
        infos = [{"TimeLimit.truncated": truncated}]
        yield obs, next_obs, rng.uniform(-1, 1, (1, 2)).astype(np.float32), np.zeros(1), np.array([truncated]), infos
        if truncated:
            frames = [frame()] * stack


def test_the_first_frame_repeated_at_reset_is_stored_once():
    space = spaces.Box(0, 255, (9, *FRAME_SHAPE[1:]), dtype=np.uint8)
    ours, reference = make_pair(space, 40, 1)
    for step, transition in enumerate(repeated_first_frame_transitions(120, episode_length=10)):
        used = ours._n_frame_slots - len(ours._free_slots)
        ours.add(*transition)
        reference.add(*transition)
        # An episode's first transition stores its reset frame once and its first new frame; later ones one frame.
        expected_new = 2 if step % 10 == 0 else 1
        if not ours.full:
            assert ours._n_frame_slots - len(ours._free_slots) - used == expected_new, step
    assert_same_storage(ours, reference)
    assert_slots_consistent(ours)
    assert_same_sample(ours, reference, seed=3)


def test_buffer_size_one_reuses_the_overwritten_transition_frames():
    venv = make_vec_env(1, 3, min_length=4, max_length=4)
    ours, reference = make_pair(venv.observation_space, 1)
    for transition in transitions(venv, 20):
        ours.add(*transition)
        reference.add(*transition)
        assert_same_storage(ours, reference)
        assert_slots_consistent(ours)
    assert_same_sample(ours, reference, seed=0)


def test_short_episodes_grow_the_store_without_overwriting_live_frames():
    venv = make_vec_env(2, 3, min_length=1, max_length=2)
    ours, reference = make_pair(venv.observation_space, 30, 2)
    initial_capacity = ours._frame_capacity
    for step, transition in enumerate(transitions(venv, 300)):
        ours.add(*transition)
        reference.add(*transition)
        if step % 50 == 49:
            assert_slots_consistent(ours)
            assert_same_storage(ours, reference)
    assert ours._frame_capacity > initial_capacity
    assert_same_sample(ours, reference, seed=5)


def test_steady_state_bytes_per_transition_close_to_one_frame():
    frame_shape = (3, 48, 48)
    venv = make_vec_env(1, 3, frame_shape=frame_shape, min_length=100, max_length=100)
    buffer = AugmentedPixelReplayBuffer(200, venv.observation_space, ACTION_SPACE, device="cpu", image_size=40)
    for transition in transitions(venv, 600):
        buffer.add(*transition)
    frame_bytes = int(np.prod(frame_shape))
    assert buffer.frame_nbytes == frame_bytes
    assert buffer.bytes_per_transition() < 1.05 * frame_bytes
    full_stacks = 2 * 3 * frame_bytes
    assert buffer.bytes_per_transition() < full_stacks / 5


def test_frames_are_allocated_lazily():
    space = spaces.Box(0, 255, (9, 100, 100), dtype=np.uint8)
    buffer = AugmentedPixelReplayBuffer(1_000_000, space, ACTION_SPACE, device="cpu")
    assert buffer._frames is None
    assert buffer.frame_stack == 3 and buffer.frame_shape == (3, 100, 100)
    # Only the per-transition arrays: int32 frame indices next to SB3's actions, rewards, dones and timeouts.
    assert buffer.nbytes() == 1_000_000 * (2 * 4 + 3 * 4 + 2 * 3 * 4)


@pytest.mark.parametrize("storage_device", [None, "cpu"])
def test_save_load_round_trip(tmp_path, storage_device):
    venv = make_vec_env(2, 3)
    ours, reference = make_pair(venv.observation_space, 12, 2, storage_device=storage_device)
    stream = transitions(venv, 80)
    for _ in range(40):
        transition = next(stream)
        ours.add(*transition)
        reference.add(*transition)
    state = ours.__getstate__()  # only the used slots travel, as a host array
    assert isinstance(state["_frames"], np.ndarray) and len(state["_frames"]) == ours._n_frame_slots < ours._frame_capacity
    save_to_pkl(tmp_path / "buffer.pkl", ours)
    loaded = load_from_pkl(tmp_path / "buffer.pkl")
    assert isinstance(loaded, AugmentedPixelReplayBuffer)
    assert loaded.storage_device == ours.storage_device
    assert loaded._frame_capacity == ours._frame_capacity
    assert_same_sample(loaded, reference, seed=2)
    for transition in stream:  # adding after the load keeps matching, frame reuse included
        for buffer in (ours, loaded, reference):
            buffer.add(*transition)
    assert_same_storage(loaded, reference)
    assert_slots_consistent(loaded)
    assert loaded._n_frame_slots == ours._n_frame_slots


def test_move_frames_keeps_every_stack_and_the_frame_reuse():
    venv = make_vec_env(2, 3)
    moved, reference = make_pair(venv.observation_space, 16, 2)
    unmoved, _ = make_pair(venv.observation_space, 16, 2)
    steps = transitions(venv, 40)
    for transition in [next(steps) for _ in range(20)]:
        for buffer in (moved, unmoved, reference):
            buffer.add(*transition)
    for storage_device in ("cpu", None, "auto"):
        moved.move_frames(storage_device)
        assert isinstance(moved._frames, np.ndarray) == (storage_device is None)
        assert_same_storage(moved, reference)
    for transition in steps:
        for buffer in (moved, unmoved, reference):
            buffer.add(*transition)
        # The same slots are taken and freed as in a buffer that never moved: frames are still stored once.
        assert moved._n_frame_slots == unmoved._n_frame_slots and list(moved._free_slots) == list(unmoved._free_slots)
    assert_same_storage(moved, reference)
    assert_slots_consistent(moved)


def test_the_memory_warning_comes_with_the_first_frame_not_with_the_buffer(monkeypatch):
    from sb3_gaara.common import buffers

    fake_psutil = SimpleNamespace(virtual_memory=lambda: SimpleNamespace(available=1000))
    monkeypatch.setattr(buffers, "psutil", fake_psutil)  # 1000 bytes free
    venv = make_vec_env(1, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # building it, as a load for acting does, warns of nothing
        ours, _ = make_pair(venv.observation_space, 50)
    with pytest.warns(UserWarning, match="not have apparently enough memory"):
        ours.add(*next(transitions(venv, 1)))


def test_reset_empties_the_buffer():
    venv = make_vec_env(1, 3)
    ours, reference = make_pair(venv.observation_space, 10)
    for transition in transitions(venv, 15):
        ours.add(*transition)
    ours.reset()
    assert ours.size() == 0 and ours._n_frame_slots == 1
    for transition in transitions(venv, 25, seed=1):
        ours.add(*transition)
        reference.add(*transition)
    assert_same_storage(ours, reference)
    assert_slots_consistent(ours)


def test_sampling_inside_gaara_sac(make_model):
    model = make_model(replay_buffer_kwargs=dict(storage_device="cpu"), learning_starts=5, buffer_size=30)
    model.learn(total_timesteps=12)
    buffer = model.replay_buffer
    assert isinstance(buffer, AugmentedPixelReplayBuffer)
    assert buffer.storage_device == th.device("cpu") and buffer.frame_stack == 2
    assert model._n_updates > 0


def test_clear_errors():
    stacked = spaces.Box(0, 255, (9, 12, 12), dtype=np.uint8)
    with pytest.raises(ValueError, match="channel-first"):
        AugmentedPixelReplayBuffer(10, spaces.Box(0, 255, (12, 12, 9), dtype=np.uint8), ACTION_SPACE, image_size=8)
    with pytest.raises(ValueError, match="anchor_crop"):
        AugmentedPixelReplayBuffer(10, stacked, ACTION_SPACE, image_size=8, anchor_crop="left")
    with pytest.raises(ValueError, match="does not divide"):
        AugmentedPixelReplayBuffer(10, stacked, ACTION_SPACE, image_size=8, frame_stack=2)
    with pytest.raises(ValueError, match="positive integer"):
        AugmentedPixelReplayBuffer(10, stacked, ACTION_SPACE, image_size=8, frame_stack=0)
    with pytest.raises(ValueError, match="smaller than image_size"):
        AugmentedPixelReplayBuffer(10, stacked, ACTION_SPACE, image_size=16)
    with pytest.raises(ValueError, match="simultaneously"):
        AugmentedPixelReplayBuffer(10, stacked, ACTION_SPACE, image_size=8, optimize_memory_usage=True)

    buffer = AugmentedPixelReplayBuffer(10, stacked, ACTION_SPACE, device="cpu", image_size=8, n_envs=2)
    with pytest.raises(ValueError, match="empty"):
        buffer.get_stacks(np.array([0]), np.array([0]))
    images = np.zeros((2, 9, 12, 12), dtype=np.uint8)
    args = (np.zeros((2, 2), np.float32), np.zeros(2), np.zeros(2), [{}, {}])
    with pytest.raises(ValueError, match=r"one channel-first observation per env"):
        buffer.add(images[:1], images, *args)
    with pytest.raises(ValueError, match=r"one channel-first observation per env"):
        buffer.add(images, images.transpose(0, 2, 3, 1), *args)
    with pytest.raises(ValueError, match="uint8 images"):
        buffer.add(images.astype(np.float32), images, *args)
    buffer.add(images, images, *args)
    assert buffer._n_frame_slots == 1  # all-zero stacks only point at the zero slot

    normalize = VecNormalize(make_vec_env(2, 3), norm_obs=True, norm_reward=False)
    with pytest.raises(ValueError, match="norm_obs=False"):
        buffer.sample(2, env=normalize)


class _GrayscaleStackEnv(FakeImageEnv):
    """Three stacked grayscale frames: 3 channels that the channel count alone would read as one RGB frame."""

    frame_stack = 3


@pytest.mark.parametrize("algorithm_name", ["GAARASAC", "DrQv2"])
def test_the_replay_buffer_takes_the_frame_stack_the_env_says(algorithm_name):
    import sb3_gaara
    from sb3_gaara.common.env_steps import get_frame_stack

    algorithm = getattr(sb3_gaara, algorithm_name)
    env = _GrayscaleStackEnv(spaces.Box(0, 255, (3, 20, 20), dtype=np.uint8))
    assert get_frame_stack(env) == 3 and get_frame_stack(FakeImageEnv()) is None
    model = tiny_model(algorithm, env=env)
    assert model.replay_buffer.frame_stack == 3 and model.replay_buffer.frame_shape == (1, 20, 20)
    # without the env's word, the channels decide: one RGB frame
    assert (
        tiny_model(algorithm, env=FakeImageEnv(spaces.Box(0, 255, (3, 20, 20), dtype=np.uint8))).replay_buffer.frame_stack == 1
    )


def _add_random_transitions(buffer: AugmentedPixelReplayBuffer, n_steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    shape = (1, *buffer.obs_shape)
    obs = rng.integers(0, 256, shape, dtype=np.uint8)
    for _ in range(n_steps):
        next_obs = rng.integers(0, 256, shape, dtype=np.uint8)
        action = rng.uniform(-1, 1, (1, buffer.action_dim)).astype(np.float32)
        buffer.add(obs, next_obs, action, np.array([1.0]), np.array([False]), [{}])
        obs = next_obs


@pytest.mark.parametrize(
    "algorithm, variant, views",
    [
        ("DrQv2", None, ()),
        ("DrQ", None, ()),
        ("SACAE", None, ()),
        ("GAARASAC", "pixel_sac", ()),
        ("GAARASAC", "gaara", CONTRASTIVE_VIEWS),
        ("CURLSAC", None, CONTRASTIVE_VIEWS),
        ("GAARASAC", "random_anchor", CONTRASTIVE_VIEWS),
    ],
)
def test_each_algorithm_samples_only_the_views_its_losses_read(algorithm, variant, views):
    import sb3_gaara

    model = tiny_model(getattr(sb3_gaara, algorithm), **({} if variant is None else {"variant": variant}))
    buffer = model.replay_buffer
    assert buffer.contrastive_views == views
    _add_random_transitions(buffer, 10)
    sample = buffer.sample(4)
    if not views:
        assert sample.obs_anchor is None and sample.obs_pos is None
        return
    assert sample.obs_anchor is not None and sample.obs_pos is not None
    assert sample.obs_anchor.shape == sample.obs_pos.shape == sample.observations.shape
    assert sample.observations.shape == (4, buffer.obs_shape[0], buffer.image_size, buffer.image_size)
    assert (sample.obs_anchor is sample.observations) == (model.variant != "random_anchor")
    assert not th.equal(sample.obs_pos, sample.observations)  # a random crop (of 5 x 5 offsets, for 4 samples)


def test_gaarasac_refuses_a_buffer_without_the_views_its_losses_read():
    import sb3_gaara

    with pytest.raises(ValueError, match="lacks \\['positive'\\]"):
        tiny_model(sb3_gaara.CURLSAC, replay_buffer_kwargs={"contrastive_views": ("anchor",)})


def test_a_buffer_pickled_before_the_views_option_loads_and_takes_the_model_views(tmp_path):
    """``tests/data/saved_0.1.0_buffer.pkl`` has no ``contrastive_views``: it loads with none, and a model that
    loads it sets the views of its own losses (whichever model saved it)."""
    import sb3_gaara

    path = Path(__file__).resolve().parent / "data" / "saved_0.1.0_buffer.pkl"
    assert b"contrastive_views" not in path.read_bytes()  # written before the option existed
    old = load_from_pkl(path)
    assert isinstance(old, AugmentedPixelReplayBuffer) and old.size() == 13 and old.contrastive_views == ()
    sample = old.sample(4)
    assert sample.obs_anchor is None and sample.obs_pos is None
    for algorithm, views in ((sb3_gaara.GAARASAC, CONTRASTIVE_VIEWS), (sb3_gaara.SACAE, ())):
        model = tiny_model(algorithm)
        model.load_replay_buffer(path)
        assert model.replay_buffer.size() == 13 and model.replay_buffer.contrastive_views == views
        sample = model.replay_buffer.sample(4)
        assert (sample.obs_pos is not None) == (sample.obs_anchor is not None) == bool(views)
