"""rl-zoo3 integration: hyper-parameter files, the start-up hook, the patches, and the zoo scripts end to end."""

from __future__ import annotations

import argparse
import glob
import importlib.util
import inspect
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from conftest import (
    DREAMER_TINY_POLICY_KWARGS,
    SLAC_TINY_POLICY_KWARGS,
    FakeImageEnv,
    tiny_kwargs,
    tiny_kwargs_for,
    tiny_model,
)
from gymnasium import spaces

import sb3_gaara
from sb3_gaara import CURLSAC, GAARASAC, SACAE, SLAC, Dreamer, DrQ, DrQv2
from sb3_gaara.algorithms import ALGORITHMS
from sb3_gaara.common.buffers import AugmentedPixelReplayBuffer
from sb3_gaara.envs import ACTION_REPEAT, DMC_TASKS, default_action_repeat, dmc_env_id
from sb3_gaara.zoo import ZOO_ALGORITHMS, check_hyperparameter_names, hyperparams_path, register

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_SOURCE = REPO_ROOT / "sb3_gaara" / "zoo" / "_startup.py"
PLANET_TASKS = ("finger-spin", "cartpole-swingup", "reacher-easy", "cheetah-run", "walker-walk", "ball_in_cup-catch")
ENV_STEPS = 500_000
MAX_BUFFER = 500_000
#: Keys of an entry that rl-zoo3 consumes itself (everything else goes to the algorithm's constructor).
ZOO_KEYS = {"policy", "frame_stack", "n_timesteps", "env_kwargs", "n_envs", "normalize", "env_wrapper", "callback"}


def _subprocess_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SB3_GAARA_ZOO_HOOK", None)
    env.update(overrides)
    return env


# --- hyper-parameter files -------------------------------------------------------------------------------


def test_top_level_hyperparams_is_a_link_to_the_package_folder():
    # One copy of each file: sb3_gaara/hyperparams ships in the wheel; the top-level path is a relative symlink.
    top_level = REPO_ROOT / "hyperparams"
    assert top_level.is_symlink() and os.readlink(top_level) == os.path.join("sb3_gaara", "hyperparams")
    assert top_level.resolve() == (REPO_ROOT / "sb3_gaara" / "hyperparams").resolve() == hyperparams_path("gaara_sac").parent


def test_there_is_one_hyperparams_file_per_algorithm():
    packaged = {path.name for path in hyperparams_path("gaara_sac").parent.glob("*.yml")}
    assert packaged == {f"{algo}.yml" for algo in ZOO_ALGORITHMS}


#: The papers' settings that the yml files omit because they are the constructor's defaults (their comment headers)
PAPER_DEFAULTS: dict[type, dict[str, Any]] = {
    # SAC+GAARA, appendix A.1
    GAARASAC: dict(
        batch_size=128,
        learning_starts=1000,
        gamma=0.99,
        learning_rate=1e-3,
        tau=0.01,
        encoder_tau=0.05,
        target_update_interval=2,
        actor_update_freq=2,
        ent_coef="auto_0.1",
    ),
    # SLAC, appendix B
    SLAC: dict(
        learning_rate=3e-4,
        model_learning_rate=1e-4,
        batch_size=256,
        model_batch_size=32,
        sequence_length=8,
        learning_starts=10_000,
        model_pretraining_steps=100_000,
        gamma=0.99,
        tau=0.005,
        ent_coef="auto",
        target_entropy="auto",
        train_freq=1,
        gradient_steps=1,
    ),
    # Dreamer, appendix A (5 seed episodes and 100 updates per 1000-step episode, at action repeat 2)
    Dreamer: dict(
        learning_rate=8e-5,
        value_learning_rate=8e-5,
        model_learning_rate=6e-4,
        batch_size=50,
        sequence_length=50,
        imagination_horizon=15,
        gamma=0.99,
        lambda_=0.95,
        free_nats=3.0,
        kl_scale=1.0,
        kl_balance=None,
        grad_clip=100.0,
        exploration_noise=0.3,
        learning_starts=2500,
        train_freq=500,
        gradient_steps=100,
        planner="actor",
        planner_kwargs=None,
    ),
}


@pytest.mark.parametrize("algorithm", list(PAPER_DEFAULTS), ids=lambda algorithm: algorithm.zoo_name)
def test_constructor_defaults_are_the_paper_settings_the_yml_omits(algorithm: type):
    defaults = {name: p.default for name, p in inspect.signature(algorithm.__init__).parameters.items()}
    paper = PAPER_DEFAULTS[algorithm]
    assert {name: defaults[name] for name in paper} == paper


@pytest.mark.parametrize("algo", sorted(ZOO_ALGORITHMS))
def test_hyperparams_follow_the_paper(algo: str):
    entries = yaml.safe_load(hyperparams_path(algo).read_text())
    assert {f"dmc-{task}" for task in PLANET_TASKS} | {"default"} <= set(entries)
    assert set(entries) - {"default"} <= {dmc_env_id(domain, task) for domain, task in DMC_TASKS}
    # the default entry assumes an action repeat of 2: every task with another repeat needs its own entry
    assert set(ACTION_REPEAT) == {task.split("-")[0] for task in PLANET_TASKS}
    other_repeat = {dmc_env_id(domain, task) for domain, task in DMC_TASKS if default_action_repeat(domain) != 2}
    assert algo in ("drqv2", "dreamer") or other_repeat <= set(entries)
    defaults = {name: p.default for name, p in inspect.signature(ZOO_ALGORITHMS[algo].__init__).parameters.items()}
    # DrQ and DrQ-v2 render at their 84 px input size instead of cropping 84 px out of 100 px renders; DrQ-v2 uses
    # action repeat 2 on every task; SLAC models single 64 px frames (at the dmc-* ids' repeats, its paper's), and so
    # does Dreamer, at action repeat 2 on every task
    env_kwargs = {"frame_stack": 3, **({"height": 84, "width": 84} if algo in ("drq", "drqv2") else {})}
    if algo == "drqv2":
        env_kwargs["action_repeat"] = 2
    if algo == "slac":
        env_kwargs = {"frame_stack": 1, "height": 64, "width": 64}
    if algo == "dreamer":
        env_kwargs = {"frame_stack": 1, "height": 64, "width": 64, "action_repeat": 2}
    for env_id, entry in entries.items():
        fixed_repeat = env_id == "default" or algo in ("drqv2", "dreamer")
        repeat = 2 if fixed_repeat else default_action_repeat(env_id.split("-")[1])
        assert entry["policy"] == "CnnPolicy"
        # the env stacks 3 frames as the papers' code does; rl-zoo3's frame_stack (VecFrameStack) pads with black
        assert entry["env_kwargs"] == env_kwargs and "frame_stack" not in entry
        assert entry["n_timesteps"] * repeat == ENV_STEPS, env_id
        if algo == "drq":  # DrQ's own replay capacity, the constructor's default
            assert "buffer_size" not in entry and defaults["buffer_size"] == 100_000
        else:
            assert entry["buffer_size"] == min(entry["n_timesteps"], MAX_BUFFER), env_id
        for key, value in entry.items():
            if key in ZOO_KEYS:
                continue
            assert key in defaults, f"{env_id}: {key} is not a constructor argument"
            if algo == "drqv2" and key == "stddev_schedule_steps":
                continue  # every entry names its DrQ-v2 task group's schedule, the default one (medium) included
            assert value != defaults[key], f"{env_id}: {key}={value!r} repeats the constructor default"


# --- start-up hook ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def startup_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the start-up module under its installed, top-level name (as setup.py ships it)."""
    folder = tmp_path_factory.mktemp("startup")
    shutil.copyfile(STARTUP_SOURCE, folder / "_sb3_gaara_startup.py")
    return folder


def _run_with_hook(startup_dir: Path, code: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` after importing the start-up module, as the ``.pth`` file does at interpreter start."""
    env = _subprocess_env(PYTHONPATH=os.pathsep.join([str(startup_dir), str(REPO_ROOT)]), **environ)
    program = "import _sb3_gaara_startup\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=300)


def test_startup_module_imports_nothing(startup_dir: Path):
    env = _subprocess_env(PYTHONPATH=str(startup_dir))
    # An installed wheel or editable install has already imported the hook at start-up: forget it, so that the
    # copy under test (first on PYTHONPATH) is executed afresh and what it imports is measured.
    code = (
        "import sys; sys.modules.pop('_sb3_gaara_startup', None); before = set(sys.modules); "
        "import _sb3_gaara_startup; print(sorted(set(sys.modules) - before))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() in ("['__future__', '_sb3_gaara_startup']", "['_sb3_gaara_startup']")


def test_hook_does_nothing_until_rl_zoo3_is_imported(startup_dir: Path):
    result = _run_with_hook(
        startup_dir,
        """
        import sys, json, gymnasium
        heavy = [name for name in ("sb3_gaara", "torch", "rl_zoo3", "dm_control", "optuna") if name in sys.modules]
        assert not heavy, heavy
        assert type(sys.meta_path[0]).__name__ == "RlZooFinder"
        """,
    )
    assert result.returncode == 0, result.stderr


def test_hook_registers_everything_when_rl_zoo3_is_imported(startup_dir: Path):
    result = _run_with_hook(
        startup_dir,
        """
        import gymnasium as gym
        from rl_zoo3 import ALGOS
        from sb3_gaara.algorithms import BY_ZOO_NAME
        assert {"gaara_sac", "sac_ae", "curl_sac", "slac", "dreamer"} <= set(BY_ZOO_NAME) <= set(ALGOS), sorted(ALGOS)
        assert ALGOS["gaara_sac"].__name__ == "GAARASAC" and ALGOS["gaara_sac"].__module__ == "sb3_gaara.gaara.gaara_sac"
        assert "dmc-cheetah-run" in gym.registry and "dmc-ball_in_cup-catch" in gym.registry
        import sys
        assert "dm_control" not in sys.modules  # environments are only registered, not built
        from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
        assert set(BY_ZOO_NAME) <= set(HYPERPARAMS_SAMPLER) & set(HYPERPARAMS_CONVERTER)
        from rl_zoo3.exp_manager import ExperimentManager
        assert ExperimentManager._sb3_gaara_patched
        import argparse
        manager = ExperimentManager(argparse.Namespace(), "gaara_sac", "dmc-cheetah-run", "unused-log-folder")
        print(manager.config)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "could not register" not in result.stderr  # every patch applied (a failing one only warns)
    assert result.stdout.strip() == str(REPO_ROOT / "sb3_gaara" / "hyperparams" / "gaara_sac.yml")


def test_hook_can_be_disabled(startup_dir: Path):
    result = _run_with_hook(
        startup_dir,
        """
        import sys
        from rl_zoo3 import ALGOS
        assert "gaara_sac" not in ALGOS and "sb3_gaara" not in sys.modules
        """,
        SB3_GAARA_ZOO_HOOK="0",
    )
    assert result.returncode == 0, result.stderr


def test_broken_package_leaves_rl_zoo3_usable(startup_dir: Path, tmp_path: Path):
    # A stand-in "sb3_gaara" whose import fails: rl-zoo3 must still import, with a warning naming the cause.
    broken = tmp_path / "sb3_gaara"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('simulated breakage')\n")
    env = _subprocess_env(PYTHONPATH=os.pathsep.join([str(startup_dir), str(tmp_path)]))
    code = "import _sb3_gaara_startup\nfrom rl_zoo3 import ALGOS\nassert 'ppo' in ALGOS and 'gaara_sac' not in ALGOS\n"
    # (cwd: `python -c` puts the working directory first on sys.path, where the real package would be found)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "sb3-gaara could not register" in result.stderr and "simulated breakage" in result.stderr


def _median_startup_seconds(python: str, pth: Path, rounds: int = 12) -> tuple[float, float]:
    """Median wall time of ``python -c pass`` with and without the ``.pth`` file, interleaved to share the noise."""
    with_hook, without_hook = [], []
    disabled = pth.with_suffix(".pth-disabled")
    for _ in range(rounds):
        for sample in (with_hook, without_hook):
            if sample is without_hook:
                pth.rename(disabled)
            try:
                start = time.perf_counter()
                subprocess.run([python, "-c", "pass"], check=True)
                sample.append(time.perf_counter() - start)
            finally:
                if disabled.exists():
                    disabled.rename(pth)
    return statistics.median(with_hook), statistics.median(without_hook)


def _site_packages(python: str) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip())


def test_startup_overhead_is_below_50_ms(tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site_packages = _site_packages(python)
    shutil.copyfile(STARTUP_SOURCE, site_packages / "_sb3_gaara_startup.py")
    pth = site_packages / "sb3_gaara_zoo.pth"
    pth.write_text("import _sb3_gaara_startup\n")
    # The hook must actually run at start-up for the measurement to mean anything.
    check = "import sys; assert type(sys.meta_path[0]).__name__ == 'RlZooFinder'"
    subprocess.run([python, "-c", check], check=True)
    with_hook, without_hook = _median_startup_seconds(python, pth)
    overhead_ms = (with_hook - without_hook) * 1e3
    print(
        f"\nPython start-up with the rl-zoo3 hook: {with_hook * 1e3:.1f} ms, without: {without_hook * 1e3:.1f} ms, "
        f"overhead {overhead_ms:.1f} ms (median of 12 interleaved runs)"
    )
    assert overhead_ms < 50


# --- patches (in this process) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo() -> ModuleType:
    """rl-zoo3 with sb3-gaara registered in this process (what the start-up hook does in installed wheels)."""
    register()
    import rl_zoo3.exp_manager
    import rl_zoo3.hyperparams_opt
    import rl_zoo3.utils

    return rl_zoo3


def _manager(zoo: ModuleType, tmp_path: Path, algo: str = "gaara_sac", env_id: str = "dmc-cheetah-run", **kwargs: Any) -> Any:
    return zoo.exp_manager.ExperimentManager(argparse.Namespace(), algo, env_id, str(tmp_path / "logs"), **kwargs)


def test_algorithms_are_in_the_table(zoo: ModuleType):
    # The zoo's table is derived from the library's list of algorithms, and holds the plain classes.
    assert ZOO_ALGORITHMS == {
        "gaara_sac": GAARASAC,
        "sac_ae": SACAE,
        "curl_sac": CURLSAC,
        "drq": DrQ,
        "drqv2": DrQv2,
        "slac": SLAC,
        "dreamer": Dreamer,
    }
    assert ZOO_ALGORITHMS == {cls.zoo_name: cls for cls in ALGORITHMS}
    for zoo_name, cls in ZOO_ALGORITHMS.items():
        assert zoo.utils.ALGOS[zoo_name] is cls is getattr(sb3_gaara, cls.__name__)
    before = dict(zoo.utils.ALGOS)
    register()  # idempotent
    assert zoo.utils.ALGOS == before


@pytest.mark.parametrize(("zoo_name", "variant"), [("gaara_sac", "gaara"), ("sac_ae", "sac_ae"), ("curl_sac", "contrastive")])
def test_entries_build_plain_models_of_each_variant(zoo: ModuleType, zoo_name: str, variant: str):
    model = zoo.utils.ALGOS[zoo_name](policy="CnnPolicy", env=FakeImageEnv(), **tiny_kwargs())
    assert type(model) is ZOO_ALGORITHMS[zoo_name]
    assert model.variant == variant == model.default_variant


def test_hyperparams_are_read_from_the_package(zoo: ModuleType, tmp_path: Path):
    assert _manager(zoo, tmp_path).config == str(hyperparams_path("gaara_sac"))
    assert _manager(zoo, tmp_path, algo="curl_sac").config == str(hyperparams_path("curl_sac"))
    assert _manager(zoo, tmp_path, config="mine.yml").config == "mine.yml"
    assert Path(_manager(zoo, tmp_path, algo="sac", env_id="Pendulum-v1").config).parent.parent == Path(zoo.__file__).parent


def test_zoo_builds_stacked_channel_first_frames(zoo: ModuleType, tmp_path: Path):
    manager = _manager(zoo, tmp_path, env_id="dmc-cartpole-swingup", hyperparams={"buffer_size": 100})
    hyperparams, _ = manager.read_hyperparameters()
    assert hyperparams["n_timesteps"] == 62_500
    manager._preprocess_hyperparams(hyperparams)
    assert manager.env_kwargs == manager.eval_env_kwargs == {"frame_stack": 3} and manager.frame_stack is None
    for eval_env in (False, True):
        env = manager.create_envs(n_envs=1, eval_env=eval_env, no_log=True)
        try:
            assert env.observation_space.shape == (9, 100, 100) and env.observation_space.dtype == np.uint8
            obs = env.reset()
            assert obs.shape == (1, 9, 100, 100) and obs[0, 6:].any()
            # The env stacks the papers' way: the first frame three times at reset.
            np.testing.assert_array_equal(obs[0, :3], obs[0, 3:6])
            np.testing.assert_array_equal(obs[0, 3:6], obs[0, 6:])
            assert type(env).__name__ == "DummyVecEnv"  # channel-first frames need no VecTransposeImage
        finally:
            env.close()


def test_zoo_frame_stack_key_still_stacks_with_vec_frame_stack(zoo: ModuleType, tmp_path: Path):
    # A user's -conf file with rl-zoo3's own frame_stack key gets SB3's VecFrameStack (black frames at reset), as before.
    config = tmp_path / "mine.yml"
    config.write_text("default:\n  policy: CnnPolicy\n  n_timesteps: 100\n  frame_stack: 2\n")
    manager = _manager(zoo, tmp_path, env_id="dmc-cartpole-swingup", config=str(config), eval_freq=0)
    hyperparams, _ = manager.read_hyperparameters()
    manager._preprocess_hyperparams(hyperparams)
    env = manager.create_envs(n_envs=1, no_log=True)
    try:
        assert type(env).__name__ == "VecFrameStack" and env.observation_space.shape == (6, 100, 100)
        obs = env.reset()
        assert not obs[0, :3].any() and obs[0, 3:].any()
    finally:
        env.close()


def test_command_line_env_kwargs_add_to_the_yml_ones(zoo: ModuleType, tmp_path: Path):
    # rl-zoo3 alone would replace the yml's env_kwargs (and so drop frame_stack) and build the eval env without them.
    args = argparse.Namespace(env_kwargs={"action_repeat": 2})
    manager = zoo.exp_manager.ExperimentManager(
        args, "sac_ae", "dmc-cartpole-swingup", str(tmp_path / "logs"), env_kwargs={"action_repeat": 2}
    )
    hyperparams, saved = manager.read_hyperparameters()
    assert hyperparams["env_kwargs"] == saved["env_kwargs"] == {"frame_stack": 3, "action_repeat": 2}
    assert manager.eval_env_kwargs == {"frame_stack": 3, "action_repeat": 2}
    assert args.env_kwargs == {"frame_stack": 3, "action_repeat": 2}  # args.yml: where enjoy and record_video look
    manager = _manager(
        zoo, tmp_path, env_id="dmc-cartpole-swingup", env_kwargs={"episode_length": 80}, eval_env_kwargs={"episode_length": 40}
    )
    manager.read_hyperparameters()
    assert manager.env_kwargs == {"frame_stack": 3, "episode_length": 80}
    assert manager.eval_env_kwargs == {"frame_stack": 3, "episode_length": 40}
    # other algorithms keep rl-zoo3's behaviour
    manager = _manager(zoo, tmp_path, algo="sac", env_id="Pendulum-v1", env_kwargs={"g": 9.0})
    hyperparams, _ = manager.read_hyperparameters()
    assert "env_kwargs" not in hyperparams and manager.eval_env_kwargs == {"g": 9.0}


def _evaluation_callbacks(zoo: ModuleType, tmp_path: Path, algo: str = "gaara_sac", **kwargs: Any) -> list[Any]:
    """The ``EvalCallback``s (SB3's class and subclasses) that a manager for dmc-cartpole-swingup builds."""
    from stable_baselines3.common.callbacks import EvalCallback

    env_id = "Pendulum-v1" if algo == "sac" else "dmc-cartpole-swingup"
    manager = _manager(zoo, tmp_path, algo=algo, env_id=env_id, **kwargs)
    hyperparams, _ = manager.read_hyperparameters()
    manager._preprocess_hyperparams(hyperparams)
    manager.create_log_folder()
    manager.create_callbacks()
    return [callback for callback in manager.callbacks if isinstance(callback, EvalCallback)]


@pytest.mark.parametrize("zoo_name", sorted(ZOO_ALGORITHMS))
def test_zoo_evaluates_on_the_papers_protocol_by_default(zoo: ModuleType, tmp_path: Path, zoo_name: str):
    from sb3_gaara.evaluation import EnvStepEvalCallback, get_action_repeat

    (callback,) = _evaluation_callbacks(zoo, tmp_path, zoo_name, n_eval_envs=1)  # one evaluation callback, ours
    assert type(callback) is EnvStepEvalCallback
    assert (callback.eval_freq_env_steps, callback.eval_freq_agent_steps) == (10_000, None)
    assert callback.n_eval_episodes == 10 and callback.deterministic and callback.eval_at_start
    run = tmp_path / "logs" / zoo_name / "dmc-cartpole-swingup_1"
    assert callback.log_path == str(run / "evaluations") and callback.best_model_save_path == str(run)
    assert type(callback.callback_on_new_best).__name__ == "SaveVecNormalizeCallback"
    # a separate env built like the training env: the yml's frame stack and render size, the task's action repeat
    single_frames = zoo_name in ("slac", "dreamer")
    channels, size = (3, 64) if single_frames else (9, 84 if zoo_name in ("drq", "drqv2") else 100)
    assert callback.eval_env.observation_space.shape == (channels, size, size)
    assert get_action_repeat(callback.eval_env) == (2 if zoo_name in ("drqv2", "dreamer") else 8)


def test_zoo_eval_flags_replace_the_protocol_values(zoo: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (callback,) = _evaluation_callbacks(zoo, tmp_path, eval_freq=20, n_eval_episodes=3)
    assert (callback.eval_freq_agent_steps, callback.n_eval_episodes, callback.deterministic) == (20, 3, True)
    (callback,) = _evaluation_callbacks(zoo, tmp_path, eval_freq=20)
    assert (callback.eval_freq_agent_steps, callback.n_eval_episodes) == (20, 10)
    # rl-zoo3 train's defaults (25000 agent steps, 5 episodes) leave the protocol in place...
    (callback,) = _evaluation_callbacks(zoo, tmp_path, eval_freq=25_000, n_eval_episodes=5)
    assert (callback.eval_freq_env_steps, callback.eval_freq_agent_steps, callback.n_eval_episodes) == (10_000, None, 10)
    # ... unless the options are on the command line
    monkeypatch.setattr(sys, "argv", ["train.py", "--algo", "gaara_sac", "--eval-freq", "25000", "--eval-episodes=5"])
    (callback,) = _evaluation_callbacks(zoo, tmp_path, eval_freq=25_000, n_eval_episodes=5)
    assert (callback.eval_freq_agent_steps, callback.n_eval_episodes) == (25_000, 5)


@pytest.mark.parametrize("eval_freq", [-1, 0])
def test_zoo_eval_freq_off_turns_evaluation_off(zoo: ModuleType, tmp_path: Path, eval_freq: int):
    assert _evaluation_callbacks(zoo, tmp_path, eval_freq=eval_freq) == []


def test_other_algorithms_keep_rl_zoo3_evaluation(zoo: ModuleType, tmp_path: Path):
    (callback,) = _evaluation_callbacks(zoo, tmp_path, "sac", eval_freq=25_000)
    assert type(callback).__name__ == "EvalCallback" and (callback.eval_freq, callback.n_eval_episodes) == (25_000, 5)


def test_eval_options_are_recognised_as_argparse_reads_them():
    from sb3_gaara.zoo.patches import _option_on_command_line

    for argv in (["--eval-freq", "10"], ["--eval-freq=10"], ["--eval-f", "10"], ["-n", "5", "--eval-fr=3"]):
        assert _option_on_command_line("--eval-freq", argv), argv
    for argv in ([], ["--eval-episodes", "3"], ["--env", "dmc-cheetah-run"], ["--eval-env-kwargs", "a:1"], ["--eval"]):
        assert not _option_on_command_line("--eval-freq", argv), argv
    assert _option_on_command_line("--eval-episodes", ["--eval-episodes", "3"])


#: Bytes per transition of the replay buffer's arrays other than the frames (60 at 9x100x100 with 6 actions).
TRANSITION_ARRAY_BYTES = 64


def test_a_replay_buffer_costs_no_frame_memory_until_the_first_add():
    # Why the zoo needs no wrapper forcing buffer_size=1 on enjoy / record_video loads: building the buffer of a
    # dmc-sized model with the paper's 100k transitions allocates 6 MB, and no frame store.
    space = spaces.Box(0, 255, (9, 100, 100), dtype=np.uint8)
    start = time.perf_counter()
    buffer = AugmentedPixelReplayBuffer(100_000, space, spaces.Box(-1, 1, (6,), dtype=np.float32), device="cpu")
    assert time.perf_counter() - start < 0.5
    assert buffer.nbytes() <= TRANSITION_ARRAY_BYTES * 100_000


def test_inference_loads_keep_the_saved_buffer_size_without_frame_memory(zoo: ModuleType, tmp_path: Path):
    model = GAARASAC("CnnPolicy", FakeImageEnv(), **tiny_kwargs(buffer_size=150))
    model.learn(12)
    path = tmp_path / "model.zip"
    model.save(path)
    entry = zoo.utils.ALGOS["gaara_sac"]

    # enjoy / record_video: no buffer_size given, the plain class's load
    loaded = entry.load(path, custom_objects={"learning_rate": 0.0}, device="cpu")
    assert loaded.replay_buffer.buffer_size == 150
    assert loaded.replay_buffer.nbytes() <= TRANSITION_ARRAY_BYTES * 150  # no frame store
    obs, _ = FakeImageEnv().reset(seed=0)
    np.testing.assert_allclose(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    assert entry.load(path, device="cpu", buffer_size=40).replay_buffer.buffer_size == 40

    # train -i: rl-zoo3's resume path keeps the saved (or configured) buffer
    manager = _manager(zoo, tmp_path, algo="gaara_sac", trained_agent=str(path), device="cpu")
    env = FakeImageEnv()
    resumed = manager._load_pretrained_agent({"policy": "CnnPolicy", "batch_size": 4}, env)
    assert resumed.replay_buffer.buffer_size == 150 and resumed.batch_size == 4
    with pytest.warns(UserWarning, match="Ignoring image_size"):
        resumed = manager._load_pretrained_agent({"policy": "CnnPolicy", "buffer_size": 60, "image_size": 16}, env)
    assert resumed.replay_buffer.buffer_size == 60


def test_other_algorithms_are_untouched(zoo: ModuleType, tmp_path: Path):
    from stable_baselines3 import SAC

    assert zoo.utils.ALGOS["sac"] is SAC
    manager = _manager(zoo, tmp_path, algo="sac", env_id="Pendulum-v1")
    assert "gaara" not in manager.config


_SAC_KNOBS = {"learning_rate", "batch_size_pow", "tau", "encoder_tau", "actor_update_freq", "encoder_lr"}
_DECODER_KNOBS = {"decoder_lr", "decoder_latent_lambda", "decoder_weight_lambda"}
_ANNEALING_KNOBS = {"comparison_lambda", "comparison_lambda_min_ratio", "comparison_lambda_decay"}
#: The parameters each sampler suggests (as stored in an Optuna study), pinned: the samplers are derived from the
#: variants table, and a change of that table must not change a search space unnoticed.
SEARCHED_PARAMETERS = {
    "gaara_sac": _SAC_KNOBS | _DECODER_KNOBS | {"comparison_lr"} | _ANNEALING_KNOBS,
    "sac_ae": _SAC_KNOBS | _DECODER_KNOBS,
    "curl_sac": _SAC_KNOBS | {"comparison_lr"},
    # DrQ's encoder learns from the critic alone: the SAC knobs only
    "drq": _SAC_KNOBS,
    # DDPG's knobs and the exploration schedule
    "drqv2": {"learning_rate", "batch_size_pow", "n_steps", "tau", "stddev_end", "stddev_schedule_steps"},
    # SAC's knobs on the latents, the latent model's, and the sequences' length
    "slac": {"learning_rate", "batch_size_pow", "tau", "model_learning_rate", "model_batch_size", "sequence_length"},
    # the three parts' learning rates, the replayed sequences, and the behaviour's imagination and the KL's floor
    "dreamer": {
        "learning_rate",
        "value_learning_rate",
        "model_learning_rate",
        "batch_size",
        "sequence_length",
        "imagination_horizon",
        "lambda_",
        "free_nats",
    },
}


def _tiny_model(zoo_name: str, **overrides: Any) -> Any:
    """A tiny model of ``zoo_name`` on the fake env (:func:`conftest.tiny_model`)."""
    return tiny_model(ZOO_ALGORITHMS[zoo_name], **overrides)


def _constructor_names(raw: set[str]) -> set[str]:
    renamed = {"batch_size_pow": "batch_size", "comparison_lambda_min_ratio": "comparison_lambda_min"}
    return {renamed.get(name, name) for name in raw}


def test_each_algorithm_has_a_sampler_and_a_converter(zoo: ModuleType):
    from sb3_gaara.zoo import hyperparams_opt

    assert set(hyperparams_opt.HYPERPARAMS_SAMPLER) == set(hyperparams_opt.HYPERPARAMS_CONVERTER) == set(ZOO_ALGORITHMS)
    assert set(SEARCHED_PARAMETERS) == set(ZOO_ALGORITHMS)
    for zoo_name in ZOO_ALGORITHMS:
        assert zoo.hyperparams_opt.HYPERPARAMS_SAMPLER[zoo_name] is hyperparams_opt.HYPERPARAMS_SAMPLER[zoo_name]
        assert zoo.hyperparams_opt.HYPERPARAMS_SAMPLER[zoo_name].__name__ == f"sample_{zoo_name}_params"


@pytest.mark.parametrize("zoo_name", sorted(ZOO_ALGORITHMS))
def test_optuna_samplers_give_valid_models_and_convert_back(zoo: ModuleType, zoo_name: str):
    sampler = zoo.hyperparams_opt.HYPERPARAMS_SAMPLER[zoo_name]
    converter = zoo.hyperparams_opt.HYPERPARAMS_CONVERTER[zoo_name]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    expected = _constructor_names(SEARCHED_PARAMETERS[zoo_name])
    for _ in range(5):
        trial = study.ask()
        kwargs = sampler(trial, 2, 1, {"using_her_replay_buffer": False, "her_kwargs": {}})
        assert set(trial.params) == SEARCHED_PARAMETERS[zoo_name]
        assert set(kwargs) == expected
        assert converter(trial.params) == kwargs  # loading a trial from a study rebuilds the same model
        check_hyperparameter_names(zoo_name, ZOO_ALGORITHMS[zoo_name], kwargs)
        batch_sizes = {"drqv2": (64, 128, 256, 512), "slac": (64, 128, 256, 512), "dreamer": (16, 32, 50, 64)}
        assert kwargs["batch_size"] in batch_sizes.get(zoo_name, (32, 64, 128, 256))
        if "comparison_lambda_min" in kwargs:
            assert 0 <= kwargs["comparison_lambda_min"] <= kwargs["comparison_lambda"]
        assert zoo.utils.ALGOS[zoo_name] is ZOO_ALGORITHMS[zoo_name]
        model = _tiny_model(zoo_name, **{**kwargs, "batch_size": 4})
        for key, value in kwargs.items():  # every sampled value reaches the model
            if key != "batch_size":
                assert getattr(model, key) == value, key
        study.tell(trial, 0.0)


def test_slac_search_space_brackets_the_paper_settings():
    from sb3_gaara.zoo.hyperparams_opt import convert_slac_params, sample_slac_params

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    trial = study.ask()
    kwargs = sample_slac_params(trial, 6, 1, {})
    # the exact ranges: log-uniform around the paper's learning rates and tau, its batches and sequence length inside
    assert trial.distributions == {
        "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-3, log=True),
        "model_learning_rate": optuna.distributions.FloatDistribution(3e-5, 3e-4, log=True),
        "batch_size_pow": optuna.distributions.IntDistribution(6, 9),
        "model_batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64]),
        "tau": optuna.distributions.FloatDistribution(0.001, 0.025, log=True),
        "sequence_length": optuna.distributions.CategoricalDistribution([4, 8, 12]),
    }
    assert trial.user_attrs == {"batch_size": kwargs["batch_size"]}
    paper = PAPER_DEFAULTS[SLAC]
    for name, distribution in trial.distributions.items():
        value = paper[name] if name != "batch_size_pow" else int(np.log2(paper["batch_size"]))
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            assert value in distribution.choices, name
        else:
            assert distribution.low < value < distribution.high, name
    # the converter is the inverse of the encoding, and leaves the other names alone
    assert convert_slac_params({"batch_size_pow": 8, "tau": 0.005, "sequence_length": 8}) == {
        "batch_size": 256,
        "tau": 0.005,
        "sequence_length": 8,
    }


def test_dreamer_search_space_brackets_the_paper_settings():
    from sb3_gaara.zoo.hyperparams_opt import convert_dreamer_params, sample_dreamer_params

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    trial = study.ask()
    kwargs = sample_dreamer_params(trial, 6, 1, {})
    # the exact ranges: log-uniform around the paper's learning rates, its batch, sequence length and horizon inside,
    # lambda and the free nats uniform around its values
    assert trial.distributions == {
        "learning_rate": optuna.distributions.FloatDistribution(3e-5, 3e-4, log=True),
        "value_learning_rate": optuna.distributions.FloatDistribution(3e-5, 3e-4, log=True),
        "model_learning_rate": optuna.distributions.FloatDistribution(2e-4, 2e-3, log=True),
        "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 50, 64]),
        "sequence_length": optuna.distributions.CategoricalDistribution([32, 50, 64]),
        "imagination_horizon": optuna.distributions.CategoricalDistribution([10, 15, 20]),
        "lambda_": optuna.distributions.FloatDistribution(0.9, 0.98),
        "free_nats": optuna.distributions.FloatDistribution(1.0, 5.0),
    }
    assert kwargs == trial.params and trial.user_attrs == {}  # drawn as the constructor takes them
    paper = PAPER_DEFAULTS[Dreamer]
    for name, distribution in trial.distributions.items():
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            assert paper[name] in distribution.choices, name
        else:
            assert distribution.low < paper[name] < distribution.high, name
    # the converter leaves the names and values alone (and returns a copy)
    raw = {"batch_size": 50, "lambda_": 0.95, "sequence_length": 50}
    assert convert_dreamer_params(raw) == raw and convert_dreamer_params(raw) is not raw


# --- the zoo's scripts end to end ------------------------------------------------------------------------

TINY = [
    "--num-threads", "1", "--seed", "0", "--eval-freq", "-1",
    "--hyperparams", "learning_starts:20", "buffer_size:200", "batch_size:4",
]  # fmt: skip


def _zoo(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """``python -m sb3_gaara.zoo SCRIPT ...``: the zoo with sb3-gaara registered, from this checkout."""
    env = _subprocess_env(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "sb3_gaara.zoo", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.mark.slow
def test_zoo_train_resume_enjoy_and_optimize(tmp_path: Path):
    run = tmp_path / "logs" / "gaara_sac" / "dmc-cheetah-run_1"
    result = _zoo(
        "train", "--algo", "gaara_sac", "--env", "dmc-cheetah-run", "-n", "40", "-f", "logs", "-tb", "tb", "-P",
        "--save-replay-buffer", *TINY, cwd=tmp_path,
    )  # fmt: skip
    assert "gaara_sac.yml" in result.stdout and "env_kwargs={'frame_stack': 3}" in result.stdout
    assert "Stacking" not in result.stdout  # no VecFrameStack: the env stacks
    assert (run / "dmc-cheetah-run.zip").is_file() and (run / "replay_buffer.pkl").is_file()
    assert glob.glob(str(tmp_path / "tb" / "dmc-cheetah-run" / "GAARASAC_1" / "events.out.tfevents.*"))
    assert "40/40" in result.stdout + result.stderr  # the progress bar reached the end
    # rl-zoo3 saves the hyper-parameters as an OrderedDict and reads them back with the unsafe loader too
    config = yaml.load((run / "dmc-cheetah-run" / "config.yml").read_text(), Loader=yaml.UnsafeLoader)
    assert config["env_kwargs"] == {"frame_stack": 3} and config["policy"] == "CnnPolicy"

    result = _zoo(
        "train", "--algo", "gaara_sac", "--env", "dmc-cheetah-run", "-n", "24", "-f", "logs",
        "-i", str(run / "dmc-cheetah-run.zip"), *TINY, cwd=tmp_path,
    )  # fmt: skip
    assert "Loading pretrained agent" in result.stdout and "Loading replay buffer" in result.stdout
    assert (tmp_path / "logs" / "gaara_sac" / "dmc-cheetah-run_2" / "dmc-cheetah-run.zip").is_file()

    result = _zoo(
        "enjoy", "--algo", "gaara_sac", "--env", "dmc-cheetah-run", "-f", "logs", "--no-render", "-n", "260",
        "--num-threads", "1", cwd=tmp_path,
    )  # fmt: skip
    assert "Episode Length 250" in result.stdout  # cheetah: 1000 simulator steps / action repeat 4

    # cartpole: 80 simulator steps / action repeat 8 = 10 agent steps per (evaluation) episode
    result = _zoo(
        "train", "--algo", "gaara_sac", "--env", "dmc-cartpole-swingup", "-optimize", "--n-trials", "2", "-n", "24",
        "--n-evaluations", "1", "--eval-episodes", "1", "--sampler", "random", "--pruner", "none", "--no-optim-plots",
        "--env-kwargs", "episode_length:80", "-f", "logs", "--num-threads", "1", "--seed", "0",
        # No initial burst: 4 updates per trial at the sampled batch size (up to 256) instead of 24
        "--hyperparams", "learning_starts:20", "buffer_size:200", "init_gradient_steps:0", cwd=tmp_path,
    )  # fmt: skip
    assert "Number of finished trials:  2" in result.stdout and "comparison_lambda" in result.stdout


@pytest.mark.slow
def test_zoo_evaluation_steps_files_and_logs(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # cartpole: action repeat 8, and evaluation episodes of 40 simulator steps = 5 agent steps
    common = [
        "--env",
        "dmc-cartpole-swingup",
        "-f",
        "logs",
        "--env-kwargs",
        "episode_length:40",
        "--num-threads",
        "1",
        "--seed",
        "0",
    ]
    tiny = ["--hyperparams", "learning_starts:20", "buffer_size:200", "batch_size:4"]

    # The protocol: at the start, then every 10k environment steps (none within 30 agent steps), 10 episodes.
    result = _zoo("train", "--algo", "sac_ae", "-n", "30", *common, *tiny, cwd=tmp_path)
    data = np.load(tmp_path / "logs" / "sac_ae" / "dmc-cartpole-swingup_1" / "evaluations.npz")
    assert data["env_steps"].tolist() == [0] and data["timesteps"].tolist() == [0]
    assert data["results"].shape == (1, 10) and (data["ep_lengths"] == 5).all()

    # --eval-freq (agent steps) and --eval-episodes replace the protocol's values; one evaluation callback only.
    result = _zoo(
        "train", "--algo", "gaara_sac", "-n", "24", "--eval-freq", "10", "--eval-episodes", "2", "-tb", "tb",
        *common, *tiny, cwd=tmp_path,
    )  # fmt: skip
    run = tmp_path / "logs" / "gaara_sac" / "dmc-cartpole-swingup_1"
    data = np.load(run / "evaluations.npz")
    assert data["timesteps"].tolist() == [0, 10, 20] and data["env_steps"].tolist() == [0, 80, 160]
    assert data["results"].shape == (3, 2) and (data["ep_lengths"] == 5).all()
    assert (run / "best_model.zip").is_file()
    assert result.stdout.count("Eval env_steps=") == 3 and "Eval num_timesteps=" not in result.stdout
    (events,) = glob.glob(str(tmp_path / "tb" / "dmc-cartpole-swingup" / "GAARASAC_1" / "events.out.tfevents.*"))
    scalars = EventAccumulator(events).Reload().Tags()["scalars"]
    assert {"eval/mean_reward", "eval/env_steps"} <= set(scalars)

    # --eval-freq -1: no evaluation at all.
    result = _zoo("train", "--algo", "curl_sac", "-n", "24", *common, "--eval-freq", "-1", *tiny, cwd=tmp_path)
    run = tmp_path / "logs" / "curl_sac" / "dmc-cartpole-swingup_1"
    assert (run / "dmc-cartpole-swingup.zip").is_file() and not (run / "evaluations.npz").exists()
    assert "Creating test environment" not in result.stdout


@pytest.mark.slow
def test_zoo_record_video(tmp_path: Path):
    pytest.importorskip("moviepy", reason="rl-zoo3's record_video writes videos with moviepy (pip install moviepy)")
    _zoo("train", "--algo", "gaara_sac", "--env", "dmc-walker-walk", "-n", "8", "-f", "logs", *TINY, cwd=tmp_path)
    _zoo(
        "record_video", "--algo", "gaara_sac", "--env", "dmc-walker-walk", "-f", "logs", "-n", "12", "-o", "videos",
        cwd=tmp_path,
    )  # fmt: skip
    (video,) = glob.glob(str(tmp_path / "videos" / "*.mp4"))
    assert Path(video).stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize("zoo_name", ["sac_ae", "curl_sac"])
def test_zoo_trains_the_baselines(tmp_path: Path, zoo_name: str):
    result = _zoo("train", "--algo", zoo_name, "--env", "dmc-cheetah-run", "-n", "30", "-f", "logs", *TINY, cwd=tmp_path)
    assert f"{zoo_name}.yml" in result.stdout
    assert (tmp_path / "logs" / zoo_name / "dmc-cheetah-run_1" / "dmc-cheetah-run.zip").is_file()


@pytest.mark.slow
def test_zoo_drq_trains_on_84_px_renders_enjoys_records_and_optimizes(tmp_path: Path):
    result = _zoo("train", "--algo", "drq", "--env", "dmc-cheetah-run", "-n", "30", "-f", "logs", *TINY, cwd=tmp_path)
    assert "drq.yml" in result.stdout and "'height': 84, 'width': 84" in result.stdout
    run = tmp_path / "logs" / "drq" / "dmc-cheetah-run_1"
    model = DrQ.load(run / "dmc-cheetah-run.zip", device="cpu")
    assert model.observation_space.shape == (9, 84, 84) and model._n_updates == 10
    result = _zoo(
        "enjoy", "--algo", "drq", "--env", "dmc-cheetah-run", "-f", "logs", "--no-render", "-n", "260",
        "--num-threads", "1", cwd=tmp_path,
    )  # fmt: skip
    assert "Episode Length 250" in result.stdout
    if importlib.util.find_spec("moviepy") is not None:
        video_args = ["--env", "dmc-cheetah-run", "-f", "logs", "-n", "8", "-o", "videos"]
        _zoo("record_video", "--algo", "drq", *video_args, cwd=tmp_path)
        (video,) = glob.glob(str(tmp_path / "videos" / "*.mp4"))
        assert Path(video).stat().st_size > 1000
    result = _zoo(
        "train", "--algo", "drq", "--env", "dmc-cartpole-swingup", "-optimize", "--n-trials", "1", "-n", "24",
        "--n-evaluations", "1", "--eval-episodes", "1", "--sampler", "random", "--pruner", "none", "--no-optim-plots",
        "--env-kwargs", "episode_length:80", "-f", "logs", "--num-threads", "1", "--seed", "0",
        "--hyperparams", "learning_starts:20", "buffer_size:200", cwd=tmp_path,
    )  # fmt: skip
    assert "Number of finished trials:  1" in result.stdout and "encoder_tau" in result.stdout


@pytest.mark.slow
def test_zoo_drqv2_trains_at_action_repeat_2_on_84_px_renders_and_enjoys(tmp_path: Path):
    result = _zoo("train", "--algo", "drqv2", "--env", "dmc-walker-stand", "-n", "30", "-f", "logs", *TINY, cwd=tmp_path)
    assert "drqv2.yml" in result.stdout and "'action_repeat': 2" in result.stdout
    model = DrQv2.load(tmp_path / "logs" / "drqv2" / "dmc-walker-stand_1" / "dmc-walker-stand.zip", device="cpu")
    # one update every 2 agent steps after the 20 random ones
    assert model.observation_space.shape == (9, 84, 84) and model._n_updates == 5
    result = _zoo(
        "enjoy", "--algo", "drqv2", "--env", "dmc-walker-stand", "-f", "logs", "--no-render", "-n", "30",
        "--env-kwargs", "episode_length:40", "--num-threads", "1", cwd=tmp_path,
    )  # fmt: skip
    assert "Episode Length 20" in result.stdout  # 40 simulator steps / action repeat 2


@pytest.mark.slow
def test_zoo_slac_trains_on_64_px_single_frames_evaluates_and_enjoys(tmp_path: Path):
    # cheetah: action repeat 4, episodes of 40 simulator steps = 10 agent steps (sequences of 8 observations fit)
    common = ["--env", "dmc-cheetah-run", "-f", "logs", "--env-kwargs", "episode_length:40", "--num-threads", "1"]
    policy_kwargs = "dict(" + ",".join(f"{key}={value!r}" for key, value in SLAC_TINY_POLICY_KWARGS.items()) + ")"
    result = _zoo(
        "train", "--algo", "slac", "-n", "30", "--seed", "0", "--eval-freq", "10", "--eval-episodes", "1", *common,
        "--hyperparams", "learning_starts:20", "buffer_size:200", "batch_size:4", "model_batch_size:4",
        "model_pretraining_steps:5", f"policy_kwargs:{policy_kwargs}", cwd=tmp_path,
    )  # fmt: skip
    assert "slac.yml" in result.stdout and "'frame_stack': 1, 'height': 64, 'width': 64" in result.stdout
    run = tmp_path / "logs" / "slac" / "dmc-cheetah-run_1"
    model = SLAC.load(run / "dmc-cheetah-run.zip", device="cpu")
    # the pretraining's 5 model updates, then one model and one agent update per step after the 20 random ones
    assert model.observation_space.shape == (3, 64, 64) and model._n_updates == 10 and model._n_model_updates == 15
    # the protocol's evaluation acted with the history (SB3's recurrent state) through whole episodes
    data = np.load(run / "evaluations.npz")
    assert data["timesteps"].tolist() == [0, 10, 20, 30] and data["env_steps"].tolist() == [0, 40, 80, 120]
    assert (data["ep_lengths"] == 10).all() and (run / "best_model.zip").is_file()
    # enjoy acts with the history too; it loads SLAC with the saved buffer_size (rl-zoo3 passes buffer_size=1 only to
    # its own off-policy algorithms), which allocates no frame store until a first add
    result = _zoo("enjoy", "--algo", "slac", "--no-render", "-n", "12", *common, cwd=tmp_path)
    assert "Episode Length 10" in result.stdout


@pytest.mark.slow
def test_zoo_dreamer_trains_on_64_px_single_frames_at_action_repeat_2_evaluates_and_enjoys(tmp_path: Path):
    # walker: episodes of 20 simulator steps = 10 agent steps at Dreamer's action repeat of 2 (the yml's, not the id's)
    common = ["--env", "dmc-walker-walk", "-f", "logs", "--env-kwargs", "episode_length:20", "--num-threads", "1"]
    policy_kwargs = "dict(" + ",".join(f"{key}={value!r}" for key, value in DREAMER_TINY_POLICY_KWARGS.items()) + ")"
    result = _zoo(
        "train", "--algo", "dreamer", "-n", "30", "--seed", "0", "--eval-freq", "10", "--eval-episodes", "1", *common,
        "--hyperparams", "learning_starts:10", "buffer_size:100", "batch_size:2", "sequence_length:8", "train_freq:10",
        "gradient_steps:2", "imagination_horizon:3", f"policy_kwargs:{policy_kwargs}", cwd=tmp_path,
    )  # fmt: skip
    assert "dreamer.yml" in result.stdout
    assert "'frame_stack': 1, 'height': 64, 'width': 64, 'action_repeat': 2" in result.stdout
    run = tmp_path / "logs" / "dreamer" / "dmc-walker-walk_1"
    model = Dreamer.load(run / "dmc-walker-walk.zip", device="cpu")
    # 2 updates per 10 agent steps collected: at the end of the 10 random ones (as Dreamer's code), then at 20 and 30
    assert model.observation_space.shape == (3, 64, 64) and model._n_updates == 6 and model.planner == "actor"
    assert (model.batch_size, model.sequence_length, model.imagination_horizon) == (2, 8, 3)
    # the protocol's evaluation acted with the filtered latent state (SB3's recurrent state) through whole episodes
    data = np.load(run / "evaluations.npz")
    assert data["timesteps"].tolist() == [0, 10, 20, 30] and data["env_steps"].tolist() == [0, 20, 40, 60]
    assert (data["ep_lengths"] == 10).all() and (run / "best_model.zip").is_file()
    # enjoy passes the state along too (rl-zoo3's recurrent loop), at the saved env_kwargs' action repeat of 2
    result = _zoo("enjoy", "--algo", "dreamer", "--no-render", "-n", "12", *common, cwd=tmp_path)
    assert "Episode Length 10" in result.stdout


# --- the built wheel in a fresh virtual environment ------------------------------------------------------


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_zoo_with_no_extra_flags(tmp_path: Path):
    # Build from a copy so that stale files of an in-tree build/ cannot leak into the wheel.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "logs", "runs")
    shutil.copytree(REPO_ROOT, source, ignore=ignore)
    dist = tmp_path / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    build = _run([*pip_wheel, "-w", str(dist), str(source)])
    # setuptools' deprecations of our metadata would show here (pip prints the backend's warnings even with -q)
    assert "deprecat" not in (build.stdout + build.stderr).lower(), build.stderr[-3000:]
    (wheel,) = dist.glob("sb3_gaara-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    # --no-compile: no bytecode for the thousands of modules of torch and co. that the test never imports (155 s -> 133 s
    # for this test on 2 cores); the ones it imports compile on first use.
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    # torch first: a bare `torch` requirement would otherwise resolve to the multi-GB CUDA wheels.
    _run([*pip, f"torch=={_installed_version('torch').split('+')[0]}"])
    _run([*pip, str(wheel)])

    site_packages = _site_packages(python)
    assert (site_packages / "sb3_gaara_zoo.pth").read_text() == "import _sb3_gaara_startup\n"
    assert (site_packages / "_sb3_gaara_startup.py").read_bytes() == STARTUP_SOURCE.read_bytes()
    assert (site_packages / "sb3_gaara" / "hyperparams" / "gaara_sac.yml").is_file()

    work = tmp_path / "work"
    work.mkdir()  # not the checkout: the installed package must be the one imported
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "SB3_GAARA_ZOO_HOOK", "VIRTUAL_ENV"}}

    def zoo(*args: str) -> str:
        result = subprocess.run([python, "-m", *args], cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        assert "settotalmass" not in result.stderr  # dm_control's known absl warning is quieted at env creation
        return result.stdout

    output = zoo("rl_zoo3.train", "--algo", "gaara_sac", "--env", "dmc-cheetah-run", "-n", "40", *TINY)
    assert str(site_packages / "sb3_gaara" / "hyperparams" / "gaara_sac.yml") in output
    assert (work / "logs" / "gaara_sac" / "dmc-cheetah-run_1" / "dmc-cheetah-run.zip").is_file()
    output = zoo("rl_zoo3.enjoy", "--algo", "gaara_sac", "--env", "dmc-cheetah-run", "-f", "logs", "--no-render", "-n", "260")
    assert "Episode Length 250" in output

    with_hook, without_hook = _median_startup_seconds(python, site_packages / "sb3_gaara_zoo.pth")
    overhead_ms = (with_hook - without_hook) * 1e3
    print(
        f"\nInstalled wheel: Python start-up {with_hook * 1e3:.1f} ms with the rl-zoo3 hook, {without_hook * 1e3:.1f} ms "
        f"without, overhead {overhead_ms:.1f} ms (median of 12 interleaved runs)"
    )
    assert overhead_ms < 50


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def _installed_version(distribution: str) -> str:
    from importlib.metadata import version

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return version(distribution)


@pytest.mark.parametrize("zoo_name", sorted(ZOO_ALGORITHMS))
def test_unknown_yml_key_names_the_key_the_closest_valid_one_and_the_file(zoo_name: str):
    algorithm = ZOO_ALGORITHMS[zoo_name]
    name = {"drqv2": "stddev_clip", "slac": "model_batch_size", "dreamer": "free_nats"}.get(zoo_name, "encoder_tau")
    with pytest.raises(ValueError, match=rf"Unknown hyper-parameter\(s\) for --algo .*'{name}s' \(did you mean '{name}'\?\)"):
        check_hyperparameter_names(zoo_name, algorithm, {f"{name}s": 0.05, **tiny_kwargs_for(algorithm)})
    with pytest.raises(ValueError, match=r"'frame_stacks' \(did you mean 'frame_stack'\?\).*yml"):
        check_hyperparameter_names(zoo_name, algorithm, {"frame_stacks": 3, **tiny_kwargs_for(algorithm)})
    check_hyperparameter_names(zoo_name, algorithm, {"policy": "CnnPolicy", name: 0.1, **tiny_kwargs_for(algorithm)})


@pytest.mark.parametrize("resume", [False, True], ids=["train", "resume"])
def test_experiment_manager_checks_the_names_before_building_the_model(zoo: ModuleType, tmp_path: Path, resume: bool):
    config = tmp_path / "mine.yml"
    config.write_text("default:\n  policy: CnnPolicy\n  n_timesteps: 100\n  frame_stack: 3\n  encoder_tua: 0.1\n")
    kwargs: dict[str, Any] = {"config": str(config), "hyperparams": {"decoder_lrr": 1e-3, "buffer_size": 100}, "eval_freq": 0}
    if resume:  # train -i: the names go to GAARASAC.load, which would set a misspelt one on the model silently
        kwargs["trained_agent"] = str(tmp_path / "never_read.zip")
        (tmp_path / "never_read.zip").touch()
    manager = _manager(zoo, tmp_path, algo="sac_ae", env_id="dmc-cartpole-swingup", **kwargs)
    assert manager.continue_training == resume
    built: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(zoo.utils.ALGOS, "sac_ae", lambda *args, **kwargs: built.append(kwargs))
        patch.setattr(zoo.exp_manager.ExperimentManager, "_load_pretrained_agent", lambda *args: built.append(args))
        with pytest.raises(ValueError) as error:
            manager.setup_experiment()
    assert not built
    assert str(error.value).startswith(
        "Unknown hyper-parameter(s) for --algo sac_ae: 'encoder_tua' (did you mean 'encoder_tau'?), "
        f"'decoder_lrr' (did you mean 'decoder_lr'?) from --hyperparams. Fix the entry in {config} or the --hyperparams "
        "option. SACAE takes: "
    )


def test_experiment_manager_passes_valid_names_on(zoo: ModuleType, tmp_path: Path):
    manager = _manager(
        zoo, tmp_path, env_id="dmc-cartpole-swingup", hyperparams={"buffer_size": 100, "encoder_tau": 0.1}, eval_freq=0
    )
    built: list[dict[str, Any]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(zoo.utils.ALGOS, "gaara_sac", lambda **kwargs: built.append(kwargs))
        manager.setup_experiment()
    (kwargs,) = built
    assert kwargs["encoder_tau"] == 0.1 and kwargs["buffer_size"] == 100 and kwargs["policy"] == "CnnPolicy"
    check_hyperparameter_names("gaara_sac", GAARASAC, {key: value for key, value in kwargs.items() if key != "env"})
