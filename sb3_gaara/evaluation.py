"""Evaluation on the papers' protocol: return against *environment* steps, every 10k of them, 10 episodes.

SAC+AE, CURL, DrQ and SAC+GAARA report the mean return of 10 episodes of the deterministic policy
(acting on the center crop) after 100k and 500k *environment steps*: simulator steps, after action
repeat. SB3 and the RL Zoo count *agent* steps (``model.num_timesteps``, one per ``env.step`` call
and parallel env), so SB3's ``EvalCallback(eval_freq=10_000)`` on cheetah-run (action repeat 4)
evaluates every 40k environment steps. :class:`EnvStepEvalCallback` schedules and labels its
evaluations in environment steps::

    env_steps = model.num_timesteps * action_repeat     # num_timesteps already counts every parallel env

so with ``n_envs`` training envs and action repeat ``k`` each ``env.step`` call advances
``n_envs * k`` environment steps.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import traceback
import warnings
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import cloudpickle
import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization

from sb3_gaara.common.env_steps import env_steps, get_action_repeat
from sb3_gaara.envs.frame_stack import FrameStack, check_frame_stack

__all__ = ["EnvStepEvalCallback", "Evaluation", "get_action_repeat", "make_eval_env"]


class Evaluation(NamedTuple):
    """One evaluation of the policy.

    :param env_steps: environment (simulator) steps of training so far, after action repeat
    :param mean_reward: mean return of the evaluation episodes
    :param std_reward: standard deviation of those returns
    :param training_episodes: training episodes completed so far (the ``episode`` column of the curves)
    """

    env_steps: int
    mean_reward: float
    std_reward: float
    training_episodes: int


class _Started(NamedTuple):
    """What an evaluation knows of training when it starts: where it stands on the curve."""

    env_steps: int
    num_timesteps: int
    training_episodes: int


class _Episodes(NamedTuple):
    """The episodes of one evaluation."""

    rewards: list[float]
    lengths: list[int]
    successes: list[bool]


class _WorkerSetup(NamedTuple):
    """What the evaluation process is started with: the eval env, how to build the policy, and torch's settings."""

    env: VecEnv
    policy_class: type[BasePolicy]
    policy_kwargs: dict[str, Any]
    device: str
    threads: int
    cudnn_benchmark: bool
    tf32: bool


def run_episodes(agent: Any, env: VecEnv, **kwargs: Any) -> _Episodes:
    """SB3's ``evaluate_policy`` of ``agent`` (an algorithm, or a policy: both have SB3's ``predict``) with each
    episode's return and length, and the ``is_success`` of the episodes whose last info has one (what
    ``EvalCallback._log_success_callback`` collects; it keeps them on the callback, which the evaluation process has
    not)."""
    successes: list[bool] = []

    def log_success(locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        if locals_["done"]:
            maybe_is_success = locals_["info"].get("is_success")
            if maybe_is_success is not None:
                successes.append(maybe_is_success)

    rewards, lengths = evaluate_policy(agent, env, return_episode_rewards=True, callback=log_success, **kwargs)
    assert isinstance(rewards, list) and isinstance(lengths, list)
    return _Episodes(rewards, lengths, successes)


def _send(connection: Connection, message: Any) -> None:
    """Send with cloudpickle: ``Connection.send`` would share tensors through file descriptors, which only a
    multiprocessing child (with the parent's authentication key) can collect."""
    connection.send_bytes(cloudpickle.dumps(message))


def _receive(connection: Connection) -> Any:
    return cloudpickle.loads(connection.recv_bytes())


def _evaluation_process_main(fd: int) -> None:
    """The evaluation process of ``EnvStepEvalCallback(asynchronous=True)``: it owns the eval env (which it steps,
    renders and closes: an OpenGL context stays with the thread that made it) and a copy of the policy. It receives its
    :class:`_WorkerSetup` (pickled), then answers requests in order: ``("evaluate", state_dict, kwargs)`` with the
    episodes' returns, lengths and successes, ``("env",)`` with the env pickled, and ``("close",)``."""
    connection = Connection(fd)
    try:
        setup = _receive(connection)
        th.set_num_threads(setup.threads)
        th.backends.cudnn.benchmark = setup.cudnn_benchmark
        th.backends.cuda.matmul.allow_tf32 = setup.tf32
        policy = setup.policy_class(**setup.policy_kwargs).to(setup.device)
        policy.set_training_mode(False)
        env = setup.env
    except BaseException:
        _send(connection, ("error", traceback.format_exc()))
        return
    while True:
        try:
            request = _receive(connection)
        except EOFError:  # the training process is gone
            return
        try:
            if request[0] == "evaluate":
                policy.load_state_dict(request[1])
                _send(connection, ("episodes", run_episodes(policy, env, **request[2])))
            elif request[0] == "env":
                _send(connection, ("env", env))
            else:
                env.close()
                _send(connection, ("closed", None))
                return
        except BaseException:
            _send(connection, ("error", traceback.format_exc()))


def make_eval_env(
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    frame_stack: int = 1,
    seed: int | None = None,
) -> VecEnv:
    """A single evaluation env wrapped as the RL Zoo wraps a training env: ``make_vec_env`` (with ``Monitor``, so
    returns are the episode's true sum of rewards), then, if ``frame_stack > 1``, :class:`sb3_gaara.envs.FrameStack`:
    the last ``frame_stack`` observations, oldest first, the first one repeated at reset, as the papers' code stacks
    (the ``dmc-*`` envs' own ``frame_stack`` keyword, passed in ``env_kwargs``, gives the same observations)."""
    frame_stack = check_frame_stack(frame_stack)
    env_stack = (env_kwargs or {}).get("frame_stack", 1)
    if frame_stack > 1 and env_stack != 1:
        raise ValueError(
            f"frame_stack={frame_stack} and env_kwargs frame_stack={env_stack!r} would stack twice: give one of them."
        )
    wrapper: dict[str, Any] = {}
    if frame_stack > 1:
        wrapper = {"wrapper_class": FrameStack, "wrapper_kwargs": {"frame_stack": frame_stack}}
    return make_vec_env(env_id, n_envs=1, seed=seed, env_kwargs=env_kwargs, **wrapper)


def warn_if_action_repeats_differ(eval_repeat: int, train_repeat: int) -> None:
    """Warn when the evaluation env repeats actions another number of times than training counts: returns are sums
    over a fixed number of simulator steps only if both envs repeat alike."""
    if eval_repeat != train_repeat:
        warnings.warn(
            f"The evaluation env repeats actions {eval_repeat} times, training counts {train_repeat}: "
            "its returns are not comparable with the papers' at the same environment steps.",
            stacklevel=3,
        )


class EnvStepEvalCallback(EvalCallback):
    """SB3's ``EvalCallback``, scheduled and labelled in environment steps (after action repeat).

    Evaluates ``n_eval_episodes`` (10) episodes of the deterministic policy on ``eval_env`` every
    ``eval_freq_env_steps`` (10k) environment steps, i.e. the first callback call at which
    ``model.num_timesteps * action_repeat`` reaches the next multiple of ``eval_freq_env_steps``;
    by default also once before training (environment step 0), as the papers' curves start there.
    Each evaluation logs ``eval/mean_reward``, ``eval/std_reward``, ``eval/env_steps`` (and SB3's
    ``eval/mean_ep_length``), is appended to :attr:`history` and, with ``log_path``, saved to
    ``evaluations.npz`` (SB3's arrays, agent-step ``timesteps``, plus ``env_steps``).
    The logger is dumped at the agent step, like every other SB3 log line; read ``eval/env_steps``
    (or :attr:`history`) for the environment-step axis.

    The RL Zoo builds one for ``gaara_sac``, ``sac_ae`` and ``curl_sac`` by default (:mod:`sb3_gaara.zoo.patches`).

    :param eval_env: the environment to evaluate on, a separate instance from the training env, or a
        Gymnasium id built with :func:`make_eval_env` (``eval_env_kwargs``, ``frame_stack``, ``eval_seed``)
    :param eval_freq_env_steps: evaluate every this many environment steps (10_000); <= 0 disables
    :param n_eval_episodes: episodes per evaluation (10)
    :param action_repeat: simulator steps per agent step; ``None`` reads the training env's
        ``action_repeat`` attribute (1 if it has none); a warning tells if ``eval_env`` repeats differently
    :param eval_at_start: also evaluate before the first training step (at environment step 0)
    :param history: evaluations of an earlier, interrupted run; the schedule resumes after the last one
    :param eval_env_kwargs: keyword arguments of the env when ``eval_env`` is an id
    :param frame_stack: frames stacked when ``eval_env`` is an id, as the papers' code stacks (first frame repeated at
        reset; see :func:`make_eval_env`); 1: none
    :param eval_seed: seed of the env when ``eval_env`` is an id
    :param eval_freq_agent_steps: evaluate every this many *agent* steps instead (rl-zoo3's ``--eval-freq`` unit,
        summed over parallel envs), i.e. every ``eval_freq_agent_steps * action_repeat`` environment steps; ``None``:
        ``eval_freq_env_steps`` holds
    :param asynchronous: run the evaluations in a process of their own, on a copy of the policy taken at each
        evaluation's step, while training goes on. ``eval_env`` moves to that process at the first evaluation (pickled:
        :meth:`current_eval_env` returns it as it is then, :meth:`close` closes it there); the copy of the policy runs
        on the model's device. Evaluations still run one at a time and in order on that env, so they return what
        synchronous ones return. An evaluation is logged, saved, added to :attr:`history` and passed to its callbacks
        at the first rollout start after it finished (at the latest when the next one starts, when training ends, or
        at :meth:`finish_evaluation`); a stop its callbacks ask for takes effect at the next agent step. Not with
        ``best_model_save_path`` (the model saved would no longer be the one evaluated) nor ``VecNormalize``, and only
        for algorithms that act with their policy's ``predict`` (SB3's ``BaseAlgorithm.predict``)

    The other parameters are SB3's ``EvalCallback``'s (``deterministic=True``).
    """

    def __init__(
        self,
        eval_env: gym.Env | VecEnv | str,
        eval_freq_env_steps: int = 10_000,
        n_eval_episodes: int = 10,
        action_repeat: int | None = None,
        eval_at_start: bool = True,
        history: list[Evaluation] | None = None,
        eval_env_kwargs: dict[str, Any] | None = None,
        frame_stack: int = 1,
        eval_seed: int | None = None,
        callback_on_new_best: BaseCallback | None = None,
        callback_after_eval: BaseCallback | None = None,
        log_path: str | None = None,
        best_model_save_path: str | None = None,
        deterministic: bool = True,
        render: bool = False,
        verbose: int = 1,
        warn: bool = True,
        eval_freq_agent_steps: int | None = None,
        asynchronous: bool = False,
    ) -> None:
        if isinstance(eval_env, str):
            eval_env = make_eval_env(eval_env, env_kwargs=eval_env_kwargs, frame_stack=frame_stack, seed=eval_seed)
        if action_repeat is not None and (isinstance(action_repeat, bool) or action_repeat < 1):
            raise ValueError(f"action_repeat must be a positive integer or None, got {action_repeat!r}")
        if asynchronous and best_model_save_path is not None:
            raise ValueError(
                "asynchronous=True saves an evaluation's results after training went on, when the model is no longer the "
                "one evaluated: it cannot save best_model. Use asynchronous=False with best_model_save_path."
            )
        super().__init__(
            eval_env,
            callback_on_new_best=callback_on_new_best,
            callback_after_eval=callback_after_eval,
            n_eval_episodes=n_eval_episodes,
            eval_freq=eval_freq_env_steps,
            log_path=log_path,
            best_model_save_path=best_model_save_path,
            deterministic=deterministic,
            render=render,
            verbose=verbose,
            warn=warn,
        )
        self.eval_freq_env_steps = eval_freq_env_steps
        self.eval_freq_agent_steps = eval_freq_agent_steps
        self.eval_at_start = eval_at_start
        self.action_repeat = action_repeat
        self.history: list[Evaluation] = list(history or [])
        self.evaluations_env_steps: list[int] = []
        self.next_eval_env_steps = 0
        self.asynchronous = asynchronous
        #: the evaluation process and the training process's end of its pipe (asynchronous, once started)
        self._worker: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        #: where the evaluation under way in the evaluation process started
        self._pending: _Started | None = None
        #: the callbacks of a finished background evaluation asked to stop training
        self._stop_requested = False

    @property
    def env_steps(self) -> int:
        """Environment steps of training so far: agent steps (over all parallel envs) times the action repeat."""
        assert self.action_repeat is not None, "The callback is not initialised yet."
        return env_steps(self.num_timesteps, self.action_repeat)

    def _init_callback(self) -> None:
        super()._init_callback()
        train_repeat = get_action_repeat(self.training_env)
        eval_repeat = get_action_repeat(self.eval_env)
        if self.action_repeat is None:
            self.action_repeat = train_repeat
        if self.eval_freq_agent_steps is not None:
            self.eval_freq_env_steps = env_steps(self.eval_freq_agent_steps, self.action_repeat)
        warn_if_action_repeats_differ(eval_repeat, self.action_repeat)
        reason = self.evaluated_here_because(self.model) if self.asynchronous else None
        if reason is not None:
            raise ValueError(f"asynchronous=True evaluates a copy of the policy in a process of its own, but {reason}.")

    @staticmethod
    def evaluated_here_because(model: BaseAlgorithm) -> str | None:
        """Why ``model`` must be evaluated in the training process to give the results it gives there (``None``: it
        need not; see ``asynchronous``)."""
        name = type(model).__name__
        if type(model).predict is not BaseAlgorithm.predict:
            return f"{name} acts with a predict of its own: use asynchronous=False"
        if model.get_vec_normalize_env() is not None:
            return "VecNormalize's statistics could not follow training's there: use asynchronous=False with VecNormalize"
        if getattr(model.policy, "draws_while_acting", False):
            return (
                f"{name}'s policy draws random numbers while it acts, from the generator training draws from: there it "
                "would draw others, and training here would too. Use asynchronous=False (or the actor as planner)"
            )
        return None

    def _on_training_start(self) -> None:
        self._stop_requested = False
        freq = self.eval_freq_env_steps
        if self.history:
            self.next_eval_env_steps = (self.history[-1].env_steps // freq + 1) * freq if freq > 0 else 0
            self.best_mean_reward = max(self.best_mean_reward, *(evaluation.mean_reward for evaluation in self.history))
        else:
            self.next_eval_env_steps = 0 if self.eval_at_start else freq
        if freq > 0 and self.env_steps >= self.next_eval_env_steps:
            # Step 0 of a fresh run, or a resumed run whose last scheduled evaluation was lost with the process.
            self.evaluate(during_rollout=False)

    def _on_step(self) -> bool:
        if self._stop_requested:
            return False
        return self.evaluate() if self._due(self.num_timesteps) else True

    def _on_rollout_start(self) -> None:
        # Between two agent steps: a background evaluation that has finished is recorded here.
        if self._pending is not None and self._connection is not None and self._connection.poll():
            self.finish_evaluation()

    def _on_training_end(self) -> None:
        self.finish_evaluation()

    def may_act_on_step(self, num_timesteps: int) -> bool:
        """Whether the step that brings the model to ``num_timesteps`` agent steps evaluates (and so reads the model,
        may save it or stop training), or stops training for a finished background evaluation: see
        :func:`sb3_gaara.common.overlap.may_act_on_step`."""
        return self._due(num_timesteps) or self._stop_requested

    def _due(self, num_timesteps: int) -> bool:
        """Whether an evaluation is due once the model has made ``num_timesteps`` agent steps."""
        assert self.action_repeat is not None, "The callback is not initialised yet."
        return self.eval_freq_env_steps > 0 and env_steps(num_timesteps, self.action_repeat) >= self.next_eval_env_steps

    def evaluate(self, during_rollout: bool = True) -> bool:
        """Evaluate now (with ``asynchronous``: start the evaluation); ``during_rollout``: called from ``_on_step``,
        where ``self.locals`` holds the step's ``dones``. Returns whether training goes on."""
        # Adapted from SB3 2.9 EvalCallback._on_step, same line order: the schedule is in environment steps,
        # and the results also go to ``history``, ``eval/std_reward``, ``eval/env_steps`` and ``env_steps`` in the npz.
        if not self.finish_evaluation():  # the one before, run in the background, stopped training
            return False
        env_steps = self.env_steps
        if self.eval_freq_env_steps > 0:
            self.next_eval_env_steps = (env_steps // self.eval_freq_env_steps + 1) * self.eval_freq_env_steps

        # Sync training and eval env if there is VecNormalize
        if self.model.get_vec_normalize_env() is not None:
            try:
                sync_envs_normalization(self.training_env, self.eval_env)
            except AttributeError as e:
                raise AssertionError(
                    "Training and eval env are not wrapped the same way, "
                    "see https://stable-baselines3.readthedocs.io/en/master/guide/callbacks.html#evalcallback "
                    "and warning above."
                ) from e

        # SB3 counts a finished episode after the callbacks of its last step have run.
        ended_now = int(np.sum(self.locals.get("dones", 0))) if during_rollout else 0
        started = _Started(env_steps, self.num_timesteps, int(getattr(self.model, "_episode_num", 0)) + ended_now)
        if self.asynchronous:
            self._pending = started
            policy = {name: value.detach().to("cpu", copy=True) for name, value in self.model.policy.state_dict().items()}
            self._request("evaluate", policy, self._episode_kwargs())
            return True
        return self._record(started, run_episodes(self.model, self.eval_env, **self._episode_kwargs()))

    def finish_evaluation(self) -> bool:
        """Wait for the evaluation running in the background, if any, and record it (:attr:`history`, logs, files,
        callbacks); returns whether its callbacks let training go on (if not, the next agent step stops it). Call it
        before reading :attr:`history` or saving ``eval_env`` while ``asynchronous`` evaluations may run."""
        if self._pending is None:
            return True
        started, self._pending = self._pending, None
        episodes = self._answer("episodes")
        if not self._record(started, episodes):
            self._stop_requested = True
        return not self._stop_requested

    def current_eval_env(self) -> VecEnv:
        """The evaluation env as it is now: ``eval_env``, or with ``asynchronous``, once the evaluation process has it,
        its env pickled back (after the evaluation under way): what a checkpoint saves."""
        if self._worker is None:
            return self.eval_env
        self.finish_evaluation()
        self._request("env")
        return self._answer("env")

    def close(self) -> None:
        """Close the evaluation env: here, or with ``asynchronous``, in the evaluation process, which then ends."""
        if self._worker is None:
            self.eval_env.close()
            return
        worker = self._worker
        try:
            self.finish_evaluation()
            if worker.poll() is None:
                self._request("close")
                self._answer("closed")
        finally:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            if self._connection is not None:
                self._connection.close()
            self._worker = self._connection = None
            self._pending = None

    def _episode_kwargs(self) -> dict[str, Any]:
        return dict(n_eval_episodes=self.n_eval_episodes, render=self.render, deterministic=self.deterministic, warn=self.warn)

    def _request(self, *request: Any) -> None:
        """Send ``request`` to the evaluation process, started with ``eval_env`` and the policy the first time."""
        if self._worker is None:
            policy = self.model.policy
            setup = _WorkerSetup(
                env=self.eval_env,
                policy_class=type(policy),
                policy_kwargs=policy._get_constructor_parameters(),
                device=str(self.model.device),
                threads=th.get_num_threads(),
                cudnn_benchmark=th.backends.cudnn.benchmark,
                tf32=th.backends.cuda.matmul.allow_tf32,
            )
            # A fresh interpreter: forking a process that holds a CUDA context or OpenGL state is unsafe, and unlike
            # multiprocessing's spawn this one does not import the training script again (no __main__ guard needed).
            # It sees this process's sys.path, so the classes of eval_env and the policy unpickle there.
            self._connection, child = multiprocessing.Pipe()
            environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
            command = "import sys; from sb3_gaara.evaluation import _evaluation_process_main as main; main(int(sys.argv[1]))"
            # A session of its own: a Ctrl-C in the terminal reaches training, which decides (the study checkpoints,
            # and fetches the env from here to do so); the process ends when training closes it or goes away.
            self._worker = subprocess.Popen(
                [sys.executable, "-c", command, str(child.fileno())],
                pass_fds=(child.fileno(),),
                env=environment,
                start_new_session=True,
            )
            child.close()
            _send(self._connection, setup)
        assert self._connection is not None
        _send(self._connection, request)

    def _answer(self, kind: str) -> Any:
        """The evaluation process's answer of ``kind``; its error, or its end, as a ``RuntimeError`` here."""
        assert self._connection is not None and self._worker is not None
        try:
            answer, value = _receive(self._connection)
        except EOFError:
            raise RuntimeError(
                f"The evaluation process ended (exit code {self._worker.wait()}) before it answered: its evaluations "
                "are lost. Run with asynchronous=False to see the error here."
            ) from None
        if answer == "error":
            raise RuntimeError(f"The evaluation process failed:\n{value}")
        assert answer == kind, (answer, kind)
        return value

    def _record(self, started: _Started, episodes: _Episodes) -> bool:
        """Keep one evaluation's results: npz, :attr:`history`, logs, best reward and callbacks (SB3's order)."""
        continue_training = True
        env_steps, episode_rewards, episode_lengths = started.env_steps, episodes.rewards, episodes.lengths
        self._is_success_buffer = episodes.successes  # SB3's attribute, as after its own evaluation
        if self.log_path is not None:
            self.evaluations_timesteps.append(started.num_timesteps)
            self.evaluations_env_steps.append(env_steps)
            self.evaluations_results.append(episode_rewards)
            self.evaluations_length.append(episode_lengths)

            kwargs = {}
            # Save success log if present
            if len(episodes.successes) > 0:
                self.evaluations_successes.append(episodes.successes)
                kwargs = dict(successes=self.evaluations_successes)

            np.savez(
                self.log_path,
                timesteps=self.evaluations_timesteps,
                env_steps=self.evaluations_env_steps,
                results=self.evaluations_results,
                ep_lengths=self.evaluations_length,
                **kwargs,  # type: ignore[arg-type]
            )

        mean_reward, std_reward = float(np.mean(episode_rewards)), float(np.std(episode_rewards))
        mean_ep_length, std_ep_length = np.mean(episode_lengths), np.std(episode_lengths)
        self.last_mean_reward = mean_reward
        self.history.append(Evaluation(env_steps, mean_reward, std_reward, started.training_episodes))

        if self.verbose >= 1:
            print(
                f"Eval env_steps={env_steps} (num_timesteps={started.num_timesteps}), "
                f"episode_reward={mean_reward:.2f} +/- {std_reward:.2f}"
            )
            print(f"Episode length: {mean_ep_length:.2f} +/- {std_ep_length:.2f}")
        # Add to current Logger
        self.logger.record("eval/mean_reward", mean_reward)
        self.logger.record("eval/std_reward", std_reward)
        self.logger.record("eval/env_steps", env_steps)
        self.logger.record("eval/mean_ep_length", mean_ep_length)

        if len(episodes.successes) > 0:
            success_rate = np.mean(episodes.successes)
            if self.verbose >= 1:
                print(f"Success rate: {100 * success_rate:.2f}%")
            self.logger.record("eval/success_rate", success_rate)

        # Dump log so the evaluation results are printed with the correct timestep
        self.logger.record("time/total_timesteps", started.num_timesteps, exclude="tensorboard")
        self.logger.dump(started.num_timesteps)

        if mean_reward > self.best_mean_reward:
            if self.verbose >= 1:
                print("New best mean reward!")
            if self.best_model_save_path is not None:
                self.model.save(os.path.join(self.best_model_save_path, "best_model"))
            self.best_mean_reward = mean_reward
            # Trigger callback on new best model, if needed
            if self.callback_on_new_best is not None:
                continue_training = self.callback_on_new_best.on_step()

        # Trigger callback after every evaluation, if needed
        if self.callback is not None:
            continue_training = continue_training and self._on_event()

        return continue_training
