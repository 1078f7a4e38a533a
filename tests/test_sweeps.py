"""rl-zoo3 hyper-parameter sweeps of our algorithms: ``-optimize`` workers sharing one Optuna study (docs/sweeps.md).

Fast tests: a bad ``--storage`` stops the command at once with the fix; trials record their worker and the environment
steps of each evaluation, and the pruner acts on those evaluations (in this process, on a sqlite study). The slow test
starts a PostgreSQL server of its own and runs two ``python -m rl_zoo3.train ... -optimize`` workers on one study.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import optuna
import pytest
import sqlalchemy

from sb3_gaara.zoo import register
from sb3_gaara.zoo.patches import (
    STORAGE_CONNECT_TIMEOUT_S,
    TRIAL_ENV_STEPS_ATTR,
    TRIAL_WORKER_ATTR,
    prepare_storage,
    storage_url,
    trial_eval_callback_class,
    worker_name,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
#: cartpole: action repeat 8, so episodes of 40 simulator steps are 5 agent steps
CARTPOLE = ["--env", "dmc-cartpole-swingup", "--env-kwargs", "episode_length:40"]


def _free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _zoo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SB3_GAARA_ZOO_HOOK"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env.setdefault("MUJOCO_GL", "egl")
    return env


def _train_command() -> list[str]:
    """``python -m rl_zoo3.train`` where the start-up hook is installed (it registers our algorithms), else the package's
    own runner, which does the same without it."""
    if importlib.util.find_spec("_sb3_gaara_startup") is not None:
        return [sys.executable, "-m", "rl_zoo3.train"]
    return [sys.executable, "-m", "sb3_gaara.zoo", "train"]


# --- --storage fails fast ---------------------------------------------------------------------------------


def test_an_unreachable_storage_stops_the_command_within_seconds_with_the_fix(tmp_path: Path):
    url = f"postgresql://nobody:s3cret@127.0.0.1:{_free_port()}/sweep"
    command = [*_train_command(), "--algo", "gaara_sac", *CARTPOLE, "-optimize", "--storage", url, "--study-name", "S"]
    start = time.perf_counter()
    result = subprocess.run(
        [*command, "-n", "24", "-f", "logs", "--num-threads", "1"],
        cwd=tmp_path,
        env=_zoo_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.perf_counter() - start
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-4000:]
    assert elapsed < 15, f"took {elapsed:.1f} s"
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("Cannot connect to the Optuna storage postgresql://nobody:***@127.0.0.1:")
    assert "Connection refused" in message and "Start the database server" in message
    assert "check the host, port, user, password and database" in message
    # one message from us: no traceback, no password, and nothing built (rl-zoo3 reads the yml before envs and models)
    assert "Traceback" not in result.stderr and "sqlalchemy" not in result.stderr.lower()
    assert "s3cret" not in result.stdout + result.stderr
    assert "Loading hyperparameters" not in result.stdout and not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("study.db", "is neither a database URL"),
        ("postgres://u@localhost/db", "Write postgresql://, not postgres://"),
        ("sqlite:////no/such/folder/study.db", "Check that the file's folder exists"),
    ],
)
def test_bad_storage_urls_name_the_fix(storage: str, expected: str):
    with pytest.raises(SystemExit) as raised:
        storage_url(storage)
    message = str(raised.value)
    assert expected in message and storage in message


def test_a_missing_postgresql_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    for driver in ("psycopg", "psycopg2"):
        monkeypatch.setitem(sys.modules, driver, None)  # import fails as if not installed
    with pytest.raises(SystemExit) as raised:
        storage_url("postgresql://u:pw@127.0.0.1:5432/db")
    message = str(raised.value)
    assert "postgresql://u:***@127.0.0.1:5432/db" in message and 'pip install "sb3-gaara[postgres]"' in message
    assert "pw@" not in message


def test_journal_files_and_sqlite_urls_keep_working(tmp_path: Path):
    journal = str(tmp_path / "study.log")
    assert storage_url(journal) == journal
    prepare_storage(journal)  # nothing to do: rl-zoo3 opens the file itself
    sqlite = f"sqlite:///{tmp_path / 'study.db'}"
    assert storage_url(sqlite) == sqlite
    prepare_storage(sqlite)
    assert {"studies", "trials"} <= set(sqlalchemy.inspect(sqlalchemy.create_engine(sqlite)).get_table_names())
    assert STORAGE_CONNECT_TIMEOUT_S <= 10


def test_a_plain_postgresql_url_uses_psycopg2_when_psycopg_3_is_missing(monkeypatch: pytest.MonkeyPatch):
    from sb3_gaara.zoo.patches import _with_installed_driver

    pytest.importorskip("psycopg2")
    monkeypatch.setitem(sys.modules, "psycopg", None)
    url = _with_installed_driver(sqlalchemy.engine.make_url("postgresql://u@h:5/db"))
    assert url.drivername == "postgresql+psycopg2"
    explicit = sqlalchemy.engine.make_url("postgresql+psycopg2://u@h:5/db")
    assert _with_installed_driver(explicit) is explicit


def test_preparing_the_storage_retries_when_another_worker_creates_the_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # What PostgreSQL answers the second of two workers creating optuna's tables at the same moment.
    race = sqlalchemy.exc.IntegrityError("CREATE TABLE studies", {}, Exception('duplicate key "pg_type_typname_nsp_index"'))
    real = optuna.storages.RDBStorage
    attempts: list[str] = []

    def racing_storage(url: str, **kwargs: Any) -> Any:
        attempts.append(url)
        if len(attempts) == 1:
            raise race
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing_storage)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    prepare_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert len(attempts) == 2

    def failing_storage(url: str, **kwargs: Any) -> Any:
        attempts.append(url)
        raise race

    attempts.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", failing_storage)
    with pytest.raises(sqlalchemy.exc.IntegrityError):  # a lasting failure is not hidden
        prepare_storage(f"sqlite:///{tmp_path / 'other.db'}", attempts=3)
    assert len(attempts) == 3


# --- trials: worker, evaluations, pruning -------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo() -> ModuleType:
    register()
    import rl_zoo3.exp_manager

    return rl_zoo3


def test_trials_record_their_worker_and_evaluation_env_steps_and_are_pruned_on_the_evaluations(
    zoo: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from sb3_gaara.evaluation import get_action_repeat

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # An earlier trial that evaluated badly first and very well at the end: the median pruner keeps the new trial
    # after its first evaluation and prunes it after the second.
    study = optuna.create_study(storage=storage, study_name="S", direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=1e6, intermediate_values={1: -1e6, 2: 1e6}))
    callbacks: list[Any] = []

    class Recording(zoo.exp_manager.TrialEvalCallback):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            callbacks.append(self)

    monkeypatch.setattr(zoo.exp_manager, "TrialEvalCallback", Recording)
    manager = zoo.exp_manager.ExperimentManager(
        argparse.Namespace(),
        "gaara_sac",
        "dmc-cartpole-swingup",
        str(tmp_path / "logs"),
        n_timesteps=24,
        hyperparams={"learning_starts": 100, "buffer_size": 200},  # no gradient step: evaluations only
        env_kwargs={"episode_length": 40},  # 5 agent steps per evaluation episode
        optimize_hyperparameters=True,
        storage=storage,
        study_name="S",
        n_trials=1,
        sampler="random",
        pruner="median",
        n_startup_trials=1,
        n_evaluations=2,
        optimization_log_path=str(tmp_path / "trials"),
        no_optim_plots=True,
        seed=0,
    )
    assert manager.setup_experiment() is None
    manager.hyperparameters_optimization()

    trial = optuna.load_study(storage=storage, study_name="S").trials[1]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs[TRIAL_WORKER_ATTR] == worker_name() == f"{socket.gethostname()}:{os.getpid()}"
    # two evaluations, every 12 agent steps = 96 environment steps, reported at steps 1 and 2
    assert sorted(trial.intermediate_values) == [1, 2] and trial.user_attrs[TRIAL_ENV_STEPS_ATTR] == [96, 192]
    assert "comparison_lambda" in trial.params  # our sampler
    (callback,) = callbacks
    assert callback.deterministic and callback.n_eval_episodes == 10  # the protocol's episodes by default
    assert callback.eval_env.observation_space.shape == (9, 100, 100)  # the yml's frame stack, as in training
    assert callback.action_repeat == get_action_repeat(callback.eval_env) == 8
    evaluations = np.load(tmp_path / "trials" / "trial_1" / "evaluations.npz")
    assert evaluations["timesteps"].tolist() == [12, 24] and evaluations["results"].shape == (2, 10)
    assert (evaluations["ep_lengths"] == 5).all()
    np.testing.assert_allclose(evaluations["results"].mean(axis=1), [trial.intermediate_values[step] for step in (1, 2)])


def test_other_algorithms_trials_are_reported_as_rl_zoo3_does():
    from stable_baselines3 import SAC

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    eval_env = _pendulum()
    callback = trial_eval_callback_class()(eval_env, trial, n_eval_episodes=1, eval_freq=10)
    SAC("MlpPolicy", _pendulum(), learning_starts=100, seed=0).learn(20, callback=callback)
    eval_env.close()
    (frozen,) = study.get_trials(deepcopy=False)
    assert sorted(frozen.intermediate_values) == [1, 2]
    assert TRIAL_ENV_STEPS_ATTR not in frozen.user_attrs and callback.action_repeat is None


def _pendulum() -> Any:
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env("Pendulum-v1", n_envs=1, seed=0)


# --- two workers on one PostgreSQL study ----------------------------------------------------------------------


def _postgres_bin_dir() -> Path | None:
    """The folder of ``initdb`` (and ``pg_ctl``): on ``PATH``, else Debian's ``/usr/lib/postgresql/<version>/bin``."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    candidates.sort(key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


@contextmanager
def _postgres_server() -> Iterator[int]:
    """A throw-away PostgreSQL server on 127.0.0.1 (trust authentication, user ``postgres``); yields its port.

    Run as root, the server's binaries run as the ``postgres`` user (``runuser``), in a fresh temporary folder it owns.
    Everything is stopped and removed on exit, also after a failure.
    """
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin)")
    as_postgres: list[str] = []
    root = tempfile.mkdtemp(prefix="sb3-gaara-postgres-")
    try:
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root, and there is no postgres user to run the server as")
            os.chown(root, account.pw_uid, account.pw_gid)
            as_postgres = ["runuser", "-u", "postgres", "--"]
        data, port = os.path.join(root, "data"), _free_port()
        subprocess.run(
            [*as_postgres, str(bin_dir / "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "--no-locale"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
        log = os.path.join(root, "server.log")
        subprocess.run(
            [*as_postgres, str(bin_dir / "pg_ctl"), "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        try:
            yield port
        finally:
            subprocess.run(
                [*as_postgres, str(bin_dir / "pg_ctl"), "-D", data, "stop", "-m", "immediate"], capture_output=True, timeout=60
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(tmp_path: Path):
    psycopg2 = pytest.importorskip("psycopg2", reason="the postgres extra: pip install 'sb3-gaara[postgres]'")
    start = time.perf_counter()
    with _postgres_server() as port:
        connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE sweep")
        url = f"postgresql://postgres@127.0.0.1:{port}/sweep"
        with pytest.raises(SystemExit, match="Create the database first"):
            storage_url(f"postgresql://postgres@127.0.0.1:{port}/no_such_database")
        # Workers creating optuna's tables in a fresh database at the same moment: without the retries of
        # prepare_storage, all but one fail with a UniqueViolation (pg_type_typname_nsp_index).
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE race")
        connection.close()
        race_url, barrier, outcomes = storage_url(url.replace("/sweep", "/race")), threading.Barrier(3), []

        def prepare() -> None:
            barrier.wait()
            try:
                prepare_storage(race_url)
                outcomes.append("ok")
            except Exception as error:  # reported below
                outcomes.append(repr(error))

        threads = [threading.Thread(target=prepare) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert outcomes == ["ok"] * 3, outcomes

        workers: list[subprocess.Popen[str]] = []
        try:
            for worker in (1, 2):
                folder = tmp_path / f"worker{worker}"  # as on two machines: each worker its own log folder
                folder.mkdir()
                command = [
                    *_train_command(), "--algo", "gaara_sac", *CARTPOLE, "-optimize", "--storage", url,
                    "--study-name", "S", "--n-trials", "2", "-n", "24", "--n-evaluations", "2", "--eval-episodes", "2",
                    "--sampler", "random", "--pruner", "median", "--n-startup-trials", "1", "--no-optim-plots",
                    "--hyperparams", "learning_starts:100", "buffer_size:200", "--optimization-log-path", "trials",
                    "-f", "logs", "--num-threads", "1", "--seed", str(worker),
                ]  # fmt: skip
                with open(folder / "output.txt", "w") as output:
                    workers.append(
                        subprocess.Popen(
                            command, cwd=folder, env=_zoo_env(), stdout=output, stderr=subprocess.STDOUT, text=True
                        )
                    )
            for process in workers:
                process.wait(timeout=240)
        finally:
            for process in workers:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        outputs = [(tmp_path / f"worker{worker}" / "output.txt").read_text() for worker in (1, 2)]
        for process, output in zip(workers, outputs, strict=True):
            assert process.returncode == 0, output[-6000:]
            assert "Number of finished trials" in output

        trials = optuna.load_study(storage=storage_url(url), study_name="S").trials
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        assert len(trials) == 4 and all(trial.state in finished for trial in trials), trials
        assert sorted(trial.number for trial in trials) == [0, 1, 2, 3]  # unique, numbered by the database
        hostname = socket.gethostname()
        by_worker = {f"{hostname}:{process.pid}": 0 for process in workers}
        for trial in trials:
            by_worker[trial.user_attrs[TRIAL_WORKER_ATTR]] += 1
            reports = sorted(trial.intermediate_values)
            assert reports in ([1], [1, 2]) and trial.user_attrs[TRIAL_ENV_STEPS_ATTR] == [96, 192][: len(reports)]
            assert "comparison_lambda" in trial.params  # our sampler
            # --n-evaluations 2 and --eval-episodes 2 hold: evaluations every 12 agent steps, 2 episodes each
            worker = 1 + [f"{hostname}:{process.pid}" for process in workers].index(trial.user_attrs[TRIAL_WORKER_ATTR])
            evaluations = np.load(tmp_path / f"worker{worker}" / "trials" / f"trial_{trial.number}" / "evaluations.npz")
            assert evaluations["timesteps"].tolist() == [12, 24][: len(reports)]
            assert evaluations["results"].shape == (len(reports), 2)
        assert list(by_worker.values()) == [2, 2], by_worker
        print(
            f"{time.perf_counter() - start:.1f} s; trials:",
            [(trial.number, trial.state.name, trial.user_attrs[TRIAL_WORKER_ATTR]) for trial in trials],
        )
