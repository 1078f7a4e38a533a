"""What sb3-gaara changes in rl-zoo3, module by module.

Each ``patch_*`` function receives an rl-zoo3 module right after it has executed (see
:mod:`sb3_gaara.zoo._startup`) and is idempotent:

- ``rl_zoo3.utils``: the ``dmc-*`` Gymnasium ids are registered (``train`` checks ``--env``
  against the registry), and the algorithms of :data:`sb3_gaara.algorithms.ALGORITHMS` are added
  to ``ALGOS`` under their ``zoo_name`` (``gaara_sac``, ``sac_ae``, ``curl_sac``, ``drq``, ``drqv2``, ``slac``,
  ``dreamer``), as the plain classes: ``train``, ``enjoy``, ``record_video`` and the hub scripts validate ``--algo``
  against that table and build or load models from it. ``enjoy`` and ``record_video`` call ``predict`` with SB3's
  recurrent ``state`` and ``episode_start``, so SLAC (its history of frames and actions) and Dreamer (its filtered
  latent state) act there as in training, with no patch.
- ``rl_zoo3.hyperparams_opt``: Optuna samplers and converters for ``-optimize``.
- ``rl_zoo3.exp_manager``: ``ExperimentManager`` reads the hyper-parameters of our algorithms from
  the package's ``hyperparams/<algo>.yml`` (rl-zoo3 only looks in its own folder) unless ``-conf``
  names a file, checks their names before it builds or loads a model, and drops ``image_size`` and
  ``variant`` with a warning when it resumes training (``-i``). For our algorithms it also:

  - merges ``--env-kwargs`` into the yml's ``env_kwargs`` (rl-zoo3 replaces them, which would drop the
    yml's ``frame_stack``), builds the evaluation env with the same ``env_kwargs`` (plus ``--eval-env-kwargs``;
    rl-zoo3 ignores the yml's there) and saves them in ``args.yml``, where ``enjoy`` and ``record_video`` look;
  - evaluates on the papers' protocol instead of rl-zoo3's defaults (every 25k agent steps, 5 episodes):
    :class:`sb3_gaara.evaluation.EnvStepEvalCallback` every 10k environment steps, 10 deterministic episodes
    and once at the start, on a separate env, saving ``evaluations.npz`` and ``best_model.zip`` in the run's
    folder as rl-zoo3's ``EvalCallback`` does. ``--eval-freq N`` (agent steps) and ``--eval-episodes K``, when
    given, replace the protocol's values; ``--eval-freq -1`` (or 0) turns evaluation off.

  For ``-optimize`` (hyper-parameter sweeps, one or several workers sharing ``--storage`` and ``--study-name``):

  - ``--storage`` is checked when the ``ExperimentManager`` is built, before any env or model: a database URL must
    accept a connection within :data:`STORAGE_CONNECT_TIMEOUT_S` seconds, else the command stops with one message
    naming the URL (password masked) and the fix (:func:`storage_url`). A ``postgresql://`` URL without a driver
    uses psycopg2 when SQLAlchemy's default one (psycopg 3 since SQLAlchemy 2.1) is missing. A JournalStorage file
    (``*.log``) is left to rl-zoo3;
  - optuna's tables are created before rl-zoo3 opens the study, retried when another worker creates them at the
    same moment (:func:`prepare_storage`; two workers starting on a fresh PostgreSQL database otherwise crash one
    of them with a ``UniqueViolation``). The study itself is created or loaded by rl-zoo3 (``load_if_exists``)
    and the trials are numbered by the database;
  - each trial records the worker that ran it, ``trial.user_attrs["worker"] == "<hostname>:<pid>"``;
  - each evaluation of a trial is rl-zoo3's ``TrialEvalCallback``: the mean return of the deterministic policy on
    the evaluation env (built like the training env, as above), reported to the pruner at step 1, 2, ...
    ``--n-evaluations``. :func:`trial_eval_callback_class` adds the environment steps of each report to the trial,
    ``trial.user_attrs["eval_env_steps"]`` (report ``i`` at ``eval_env_steps[i - 1]``), and the protocol's
    10 episodes per evaluation apply unless ``--eval-episodes`` is given.

``enjoy`` and ``record_video`` pass ``buffer_size=1`` only to the algorithms they know to be off-policy,
so they load our models with the saved buffer size. That costs next to nothing: the replay buffer allocates
its frame store at the first ``add()``, and its other arrays take about 60 bytes per transition (6 MB and
under a millisecond for 100k transitions, measured on a saved 9x100x100 model). An earlier version wrapped
each class to force ``buffer_size=1``; the plain classes are simpler and are what ``push_to_hub`` names.

The same patches can be applied without the start-up hook with :func:`sb3_gaara.zoo.register`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import random
import re
import socket
import sys
import time
import warnings
from collections.abc import Collection
from pathlib import Path
from types import ModuleType
from typing import Any

from sb3_gaara.algorithms import BY_ZOO_NAME
from sb3_gaara.common.env_steps import env_steps, get_action_repeat
from sb3_gaara.common.saving import DurableSaves
from sb3_gaara.envs import register_dmc_envs
from sb3_gaara.evaluation import EnvStepEvalCallback, warn_if_action_repeats_differ

#: rl-zoo3 ``--algo`` name -> algorithm class, the library's list of algorithms (:mod:`sb3_gaara.algorithms`).
ZOO_ALGORITHMS: dict[str, type[DurableSaves]] = dict(BY_ZOO_NAME)

#: Hyper-parameter files shipped in the package (the repository's top-level ``hyperparams`` links here).
HYPERPARAMS_DIR = Path(__file__).resolve().parent.parent / "hyperparams"


#: keys of a yml entry that rl-zoo3 reads itself and never passes to the algorithm (offered as did-you-mean hints)
_ZOO_KEYS = (
    "n_timesteps",
    "policy",
    "n_envs",
    "frame_stack",
    "normalize",
    "env_wrapper",
    "vec_env_wrapper",
    "callback",
    "normalize_kwargs",
    "env_kwargs",
    "monitor_kwargs",
    "noise_type",
    "noise_std",
)


#: The papers' evaluation protocol, the zoo's default for our algorithms: environment steps between evaluations
#: (after action repeat), and episodes per evaluation (of the deterministic policy).
PROTOCOL_EVAL_FREQ_ENV_STEPS = 10_000
PROTOCOL_EVAL_EPISODES = 10

#: ``ExperimentManager`` argument -> (``rl_zoo3.train`` option, its default there). A value other than the default,
#: or the option on the command line, is the user's choice and replaces the protocol's.
_ZOO_EVAL_OPTIONS = {"eval_freq": ("--eval-freq", 25_000), "n_eval_episodes": ("--eval-episodes", 5)}


def _option_on_command_line(option: str, argv: list[str] | None = None) -> bool:
    """Whether ``option`` (e.g. ``--eval-freq``) is on the command line, as ``--eval-freq N``, ``--eval-freq=N`` or an
    abbreviation argparse accepts (``--eval-f N``)."""
    for token in sys.argv[1:] if argv is None else argv:
        name = token.split("=", 1)[0]
        if len(name) > len("--eval-") and option.startswith(name):
            return True
    return False


def _user_chose(arguments: dict[str, Any], name: str) -> bool:
    """Whether the ``ExperimentManager`` argument ``name`` is the user's choice rather than a default."""
    if name not in arguments:  # the constructor's own default
        return False
    option, default = _ZOO_EVAL_OPTIONS[name]
    return bool(arguments[name] != default or _option_on_command_line(option))


def protocol_eval_callback(manager: Any) -> EnvStepEvalCallback | None:
    """The evaluation callback of an ``ExperimentManager`` running one of our algorithms: the papers' protocol, with
    the user's ``--eval-freq`` (agent steps) and ``--eval-episodes`` in its place where given; ``None`` when
    evaluation is off (``--eval-freq`` <= 0).

    The evaluation env is built like the training env (``create_envs``, the same ``env_kwargs``, frame stack and
    action repeat); results go where rl-zoo3's ``EvalCallback`` puts them (``evaluations.npz``, ``best_model.zip``).
    """
    from rl_zoo3.callbacks import SaveVecNormalizeCallback

    freq_chosen, episodes_chosen = manager._sb3_gaara_eval_chosen
    if freq_chosen and manager.eval_freq <= 0:
        return None
    if manager.verbose > 0:
        print("Creating test environment")
    return EnvStepEvalCallback(
        manager.create_envs(manager.n_eval_envs, eval_env=True),
        eval_freq_env_steps=PROTOCOL_EVAL_FREQ_ENV_STEPS,
        eval_freq_agent_steps=manager.eval_freq if freq_chosen else None,
        n_eval_episodes=manager.n_eval_episodes if episodes_chosen else PROTOCOL_EVAL_EPISODES,
        callback_on_new_best=SaveVecNormalizeCallback(save_freq=1, save_path=manager.params_path),
        log_path=manager.save_path,
        best_model_save_path=manager.save_path,
        deterministic=True,
    )


#: Seconds the database server named by ``--storage`` has to accept a connection before the command stops.
STORAGE_CONNECT_TIMEOUT_S = 5

#: Trial user attributes set for our algorithms: the worker that ran the trial (``<hostname>:<pid>``), and the
#: environment steps (after action repeat) of each evaluation reported to the pruner, in report order.
TRIAL_WORKER_ATTR = "worker"
TRIAL_ENV_STEPS_ATTR = "eval_env_steps"

#: SQLAlchemy driver -> its keyword for a connect timeout in seconds.
_CONNECT_TIMEOUT_KEYWORDS = {
    "psycopg2": "connect_timeout",
    "psycopg": "connect_timeout",
    "pymysql": "connect_timeout",
    "mysqldb": "connect_timeout",
    "pg8000": "timeout",
}

#: Database backend -> how to install a driver for it.
_DRIVER_INSTALL = {
    "postgresql": 'pip install "sb3-gaara[postgres]" (psycopg2)',
    "mysql": "pip install pymysql and use a mysql+pymysql:// URL",
    "mariadb": "pip install pymysql and use a mariadb+pymysql:// URL",
}

_URL_FORM = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


def worker_name() -> str:
    """This process as a sweep worker: ``<hostname>:<pid>`` (the ``worker`` user attribute of its trials)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _masked(storage: str) -> str:
    """``storage`` with the password of a ``scheme://user:password@host`` URL replaced by ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", storage)


def _with_installed_driver(url: Any) -> Any:
    """``url`` (a SQLAlchemy ``URL``), with ``postgresql+psycopg2`` for a bare ``postgresql`` when SQLAlchemy's
    default PostgreSQL driver (psycopg 3 since SQLAlchemy 2.1) is not installed and psycopg2 is (``sb3-gaara[postgres]``).
    Raises ``ImportError`` when neither is."""
    dialect = url.get_dialect()
    if url.drivername != "postgresql" or not hasattr(dialect, "import_dbapi"):  # SQLAlchemy < 2: psycopg2 already
        return url
    try:
        dialect.import_dbapi()
    except ImportError:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            pass
        else:
            return url.set(drivername="postgresql+psycopg2")
        raise
    return url


def _connect_args(url: Any) -> dict[str, Any]:
    keyword = _CONNECT_TIMEOUT_KEYWORDS.get(url.get_driver_name())
    return {keyword: STORAGE_CONNECT_TIMEOUT_S} if keyword else {}


def _connection_fix(backend: str, reason: str) -> str:
    """What to do about a failed connection, from the driver's ``reason``."""
    if backend == "sqlite":
        return "Check that the file's folder exists and is writable (sqlite:///relative.db, sqlite:////absolute.db)."
    lowered = reason.lower()
    if ("database" in lowered and "does not exist" in lowered) or "unknown database" in lowered:
        return f"Create the database first (createdb -h HOST -p PORT -U USER DATABASE), or fix its name ({_URL_FORM})."
    if "authentication" in lowered or "access denied" in lowered or ("role" in lowered and "does not exist" in lowered):
        return f"Check the user and the password in the URL ({_URL_FORM})."
    return f"Start the database server, or check the host, port, user, password and database in the URL ({_URL_FORM})."


def storage_url(storage: str) -> str:
    """Check the ``--storage`` of ``-optimize`` / ``--trial-id`` and return the URL optuna should open.

    A JournalStorage file (``*.log``) is returned as it is. A database URL must parse, have its driver installed and
    accept a connection within :data:`STORAGE_CONNECT_TIMEOUT_S` seconds; otherwise ``SystemExit`` with one message
    that names the URL (password masked), the driver's reason and the fix, which Python prints without a traceback.
    A ``postgresql://`` URL comes back as ``postgresql+psycopg2://`` when only psycopg2 is installed.
    """
    if storage.endswith(".log"):
        return storage
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    shown = _masked(storage)
    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        raise SystemExit(
            f"--storage {shown} is neither a database URL ({_URL_FORM}, sqlite:///study.db) "
            "nor a JournalStorage file ending in .log."
        ) from None
    shown = url.render_as_string(hide_password=True)
    backend = url.get_backend_name()
    try:
        resolved = _with_installed_driver(url)
        engine = sqlalchemy.create_engine(resolved, poolclass=NullPool, connect_args=_connect_args(resolved))
    except sqlalchemy.exc.NoSuchModuleError:
        hint = " Write postgresql://, not postgres://." if backend == "postgres" else ""
        raise SystemExit(
            f"--storage {shown}: SQLAlchemy knows no database {url.drivername!r}.{hint} Expected e.g. {_URL_FORM}."
        ) from None
    except ImportError as error:
        install = _DRIVER_INSTALL.get(backend, f"install a Python driver for {backend}")
        raise SystemExit(
            f"--storage {shown}: the database driver is not installed ({error}). Install it: {install}."
        ) from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.DBAPIError as error:
        # the driver's message, on one line
        reason = "; ".join(line.strip() for line in str(error.orig).splitlines() if line.strip())
        reason = reason if reason.endswith((".", "?", "!")) else f"{reason}."
        raise SystemExit(
            f"Cannot connect to the Optuna storage {shown} (--storage): {reason} {_connection_fix(backend, reason)}"
        ) from None
    finally:
        engine.dispose()
    return storage if resolved is url else resolved.render_as_string(hide_password=False)


def prepare_storage(storage: str, attempts: int = 5) -> None:
    """Create optuna's tables in the database of ``storage`` (a URL that :func:`storage_url` accepted), if needed.

    Several workers started at once on a fresh database all create the tables; in PostgreSQL all but one then fail
    (``UniqueViolation`` on ``pg_type_typname_nsp_index``, or a deadlock). Here a failed attempt waits a little and
    tries again: the tables are there by then and the next ``RDBStorage`` only reads them. A JournalStorage file
    needs nothing.
    """
    if storage.endswith(".log"):
        return
    import optuna
    import sqlalchemy

    for attempt in range(1, attempts + 1):
        try:
            rdb = optuna.storages.RDBStorage(
                storage, engine_kwargs={"connect_args": _connect_args(sqlalchemy.engine.make_url(storage))}
            )
        except (sqlalchemy.exc.DBAPIError, optuna.exceptions.StorageInternalError):
            if attempt == attempts:
                raise
            time.sleep(random.uniform(0.2, 0.6) * attempt)
        else:
            rdb.engine.dispose()
            return


@functools.cache
def trial_eval_callback_class() -> type:
    """rl-zoo3's ``TrialEvalCallback``, which for our algorithms also records each evaluation's environment steps.

    rl-zoo3's objective evaluates a trial ``--n-evaluations`` times (every ``n_timesteps // n_evaluations`` agent
    steps) and reports the mean return to the pruner at step 1, 2, ...; the pruners' settings (``n_warmup_steps``,
    the halving pruner's rungs) count those steps, so they stay the report's step. This subclass adds, after each
    report, the environment steps trained so far (agent steps times the action repeat) to
    ``trial.user_attrs["eval_env_steps"]``, and warns when the evaluation env repeats actions differently from the
    training env. For other algorithms it is rl-zoo3's class unchanged.
    """
    from rl_zoo3.callbacks import TrialEvalCallback

    class ProtocolTrialEvalCallback(TrialEvalCallback):
        __doc__ = trial_eval_callback_class.__doc__

        def _init_callback(self) -> None:
            super()._init_callback()
            self.eval_env_steps: list[int] = []
            self.action_repeat: int | None = None
            if isinstance(self.model, tuple(ZOO_ALGORITHMS.values())):
                self.action_repeat = get_action_repeat(self.training_env)
                warn_if_action_repeats_differ(get_action_repeat(self.eval_env), self.action_repeat)

        def _on_step(self) -> bool:
            reports = self.eval_idx
            continue_training = bool(super()._on_step())
            if self.action_repeat is not None and self.eval_idx > reports:
                self.eval_env_steps.append(int(env_steps(self.num_timesteps, self.action_repeat)))
                self.trial.set_user_attr(TRIAL_ENV_STEPS_ATTR, list(self.eval_env_steps))
            return continue_training

        def may_act_on_step(self, num_timesteps: int) -> bool:
            """Whether the coming step evaluates (and may prune): rl-zoo3's schedule, every ``eval_freq`` calls."""
            return self.eval_freq > 0 and (self.n_calls + 1) % self.eval_freq == 0

    return ProtocolTrialEvalCallback


def hyperparams_path(algo: str) -> Path:
    """Path of the shipped hyper-parameter file of an rl-zoo3 algorithm name, e.g. ``gaara_sac``."""
    return HYPERPARAMS_DIR / f"{algo}.yml"


def check_hyperparameter_names(
    zoo_name: str,
    algorithm_class: type,
    kwargs: dict[str, Any],
    config: str | None = None,
    command_line_keys: Collection[str] = (),
) -> None:
    """Refuse keys of a zoo yml (or ``--hyperparams``) that the algorithm does not take, before a model is built.

    Without this, a typo such as ``encoder_taus`` surfaces as Python's bare ``TypeError`` from the
    constructor (or, when resuming with ``-i``, is silently set on the loaded model); here the message
    names the key, the closest valid name and where to fix it.

    :param config: the hyper-parameter file read (default: the shipped one of ``zoo_name``)
    :param command_line_keys: keys given with ``--hyperparams``, reported as such
    """
    valid = [name for name in inspect.signature(algorithm_class).parameters if name != "_init_setup_model"]
    unknown = [key for key in kwargs if key not in valid]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, [*valid, *_ZOO_KEYS], n=1)
        hint = f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        hints.append(hint + (" from --hyperparams" if key in command_line_keys else ""))
    raise ValueError(
        f"Unknown hyper-parameter(s) for --algo {zoo_name}: {', '.join(hints)}. Fix the entry in "
        f"{config or hyperparams_path(zoo_name)} or the --hyperparams option. {algorithm_class.__name__} takes: "
        f"{', '.join(sorted(valid))}; rl-zoo3 itself reads: {', '.join(_ZOO_KEYS)}."
    )


def patch_utils(utils: ModuleType) -> None:
    """Register the ``dmc-*`` environments and add the algorithms to ``utils.ALGOS`` (the dict, in place)."""
    register_dmc_envs()
    for zoo_name, algorithm in ZOO_ALGORITHMS.items():
        utils.ALGOS.setdefault(zoo_name, algorithm)


def patch_hyperparams_opt(hyperparams_opt: ModuleType) -> None:
    """Add the Optuna samplers and converters of :mod:`sb3_gaara.zoo.hyperparams_opt`."""
    from sb3_gaara.zoo import hyperparams_opt as ours

    for zoo_name in ZOO_ALGORITHMS:
        hyperparams_opt.HYPERPARAMS_SAMPLER.setdefault(zoo_name, ours.HYPERPARAMS_SAMPLER[zoo_name])
        hyperparams_opt.HYPERPARAMS_CONVERTER.setdefault(zoo_name, ours.HYPERPARAMS_CONVERTER[zoo_name])


def patch_exp_manager(exp_manager: ModuleType) -> None:
    """Point ``ExperimentManager`` at the shipped hyper-parameters, check their names, clean resume loads, keep the
    yml's ``env_kwargs``, evaluate on the papers' protocol, and check ``--storage``, prepare it and label the trials of
    ``-optimize`` (see the module docstring).

    The names are checked on the dict that ``_preprocess_action_noise`` returns: in rl-zoo3 2.9 that is
    ``setup_experiment``'s final ``self._hyperparams``, which it passes whole to the constructor (training,
    and every ``-optimize`` trial, with the sampled values added) or to ``load`` (``-i``), right after.
    """
    manager_class = exp_manager.ExperimentManager
    if getattr(manager_class, "_sb3_gaara_patched", False):
        return

    original_init = manager_class.__init__
    init_signature = inspect.signature(original_init)

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = init_signature.bind(self, *args, **kwargs)
        algo = bound.arguments.get("algo")
        if algo in ZOO_ALGORITHMS and not bound.arguments.get("config"):
            bound.arguments["config"] = str(hyperparams_path(algo))
        original_init(*bound.args, **bound.kwargs)
        self._sb3_gaara_eval_chosen = tuple(_user_chose(bound.arguments, name) for name in _ZOO_EVAL_OPTIONS)
        if algo in ZOO_ALGORITHMS and self.storage is not None:
            self.storage = storage_url(self.storage)  # stops here, before any env or model, if it cannot be opened

    original_preprocess_action_noise = manager_class._preprocess_action_noise

    @functools.wraps(original_preprocess_action_noise)
    def _preprocess_action_noise(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        hyperparams = original_preprocess_action_noise(self, *args, **kwargs)
        if self.algo in ZOO_ALGORITHMS:
            check_hyperparameter_names(
                self.algo, ZOO_ALGORITHMS[self.algo], hyperparams, self.config, set(self.custom_hyperparams or ())
            )
        return hyperparams

    original_load = manager_class._load_pretrained_agent

    @functools.wraps(original_load)
    def _load_pretrained_agent(self: Any, hyperparams: dict[str, Any], env: Any) -> Any:
        if self.algo in ZOO_ALGORITHMS:
            # The keys that decide the saved networks (``DurableSaves.architecture_keys``): their ``load`` refuses them,
            # as rl-zoo3 drops ``policy`` / ``policy_kwargs`` when it resumes, for the same reason.
            for key in ZOO_ALGORITHMS[self.algo].architecture_keys:
                if key in hyperparams:
                    warnings.warn(
                        f"Ignoring {key}={hyperparams.pop(key)!r} when resuming training: "
                        f"the saved model keeps its own {key}.",
                        stacklevel=2,
                    )
        return original_load(self, hyperparams, env)

    original_read_hyperparameters = manager_class.read_hyperparameters

    @functools.wraps(original_read_hyperparameters)
    def read_hyperparameters(self: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.algo not in ZOO_ALGORITHMS:
            return original_read_hyperparameters(self)
        command_line, self.env_kwargs = self.env_kwargs, {}  # rl-zoo3 would replace the yml's env_kwargs with them
        try:
            hyperparams, saved_hyperparams = original_read_hyperparameters(self)
        finally:
            self.env_kwargs = command_line
        env_kwargs = {**(hyperparams.get("env_kwargs") or {}), **command_line}
        if env_kwargs:
            hyperparams["env_kwargs"] = saved_hyperparams["env_kwargs"] = env_kwargs
            self.env_kwargs = env_kwargs
            if self.args is not None:  # enjoy and record_video take env_kwargs from args.yml (the command line's)
                self.args.env_kwargs = dict(env_kwargs)
        self.eval_env_kwargs = {**env_kwargs, **(self._eval_env_kwargs_args or {})}
        return hyperparams, saved_hyperparams

    original_create_callbacks = manager_class.create_callbacks

    @functools.wraps(original_create_callbacks)
    def create_callbacks(self: Any) -> None:
        if self.algo not in ZOO_ALGORITHMS or self.optimize_hyperparameters:
            return original_create_callbacks(self)
        eval_freq, self.eval_freq = self.eval_freq, 0  # rl-zoo3's EvalCallback off: the protocol's replaces it
        try:
            original_create_callbacks(self)
        finally:
            self.eval_freq = eval_freq
        callback = protocol_eval_callback(self)
        if callback is not None:
            self.callbacks.append(callback)

    original_hyperparameters_optimization = manager_class.hyperparameters_optimization

    @functools.wraps(original_hyperparameters_optimization)
    def hyperparameters_optimization(self: Any) -> None:
        if self.algo in ZOO_ALGORITHMS and self.storage is not None:
            prepare_storage(self.storage)
        return original_hyperparameters_optimization(self)

    original_objective = manager_class.objective

    @functools.wraps(original_objective)
    def objective(self: Any, trial: Any) -> float:
        if self.algo in ZOO_ALGORITHMS:
            trial.set_user_attr(TRIAL_WORKER_ATTR, worker_name())
            self.deterministic_eval = True
            if not self._sb3_gaara_eval_chosen[1]:
                self.n_eval_episodes = PROTOCOL_EVAL_EPISODES
        return float(original_objective(self, trial))

    manager_class.__init__ = __init__
    manager_class.hyperparameters_optimization = hyperparameters_optimization
    manager_class.objective = objective
    manager_class.read_hyperparameters = read_hyperparameters
    manager_class.create_callbacks = create_callbacks
    manager_class._preprocess_action_noise = _preprocess_action_noise
    manager_class._load_pretrained_agent = _load_pretrained_agent
    # rl-zoo3's objective builds its TrialEvalCallback by this module-level name.
    exp_manager.TrialEvalCallback = trial_eval_callback_class()  # type: ignore[attr-defined]
    manager_class._sb3_gaara_patched = True
