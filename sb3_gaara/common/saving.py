"""Saving and loading shared by every algorithm of the package: SB3's ``save`` / ``save_replay_buffer`` made atomic
for paths, and a ``load`` that refuses overrides the saved networks could not honour."""

from __future__ import annotations

import io
import pathlib
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import GymEnv

from sb3_gaara.common.durability import atomic_file

SelfDurable = TypeVar("SelfDurable", bound="DurableSaves")


class DurableSaves(OffPolicyAlgorithm):
    """Mixin before an SB3 off-policy algorithm (``class GAARASAC(DurableSaves, SAC)``).

    * ``save`` and ``save_replay_buffer`` write a path through :func:`~sb3_gaara.common.durability.atomic_file`: the
      file is written beside its destination and renamed over it only once complete, so a process killed mid-save
      (SIGKILL, pre-emption) leaves the previous file loadable. A bare name gets SB3's suffix; file objects are
      written directly, as in SB3.
    * ``load`` refuses keyword overrides of :attr:`architecture_keys` (the saved networks were built for the saved
      values), and says what to do when the env's observations have another shape than the model's.
    """

    #: constructor arguments that decide the saved networks: ``load`` refuses to override them
    architecture_keys: ClassVar[tuple[str, ...]] = ()
    #: ``--algo`` name in the RL Zoo (each algorithm of the package sets its own)
    zoo_name: ClassVar[str]

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """SB3's ``save``, atomic for paths (class docstring)."""
        if isinstance(path, io.BufferedIOBase):
            super().save(path, exclude=exclude, include=include)
            return
        with atomic_file(_with_suffix(path, ".zip")) as file:
            super().save(file, exclude=exclude, include=include)

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """SB3's ``save_replay_buffer``, atomic for paths like :meth:`save`."""
        if isinstance(path, io.BufferedIOBase):
            super().save_replay_buffer(path)
            return
        with atomic_file(_with_suffix(path, ".pkl")) as file:
            super().save_replay_buffer(file)

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfDurable],
        path: Any,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfDurable:
        """SB3's ``load``, refusing keyword overrides that would not match the saved networks."""
        for key in cls.architecture_keys:
            if key in kwargs:
                raise ValueError(
                    f"{key}={kwargs[key]!r} cannot be changed when loading: the saved networks were built for the saved "
                    f"{key}. Train a new model to use another {key}."
                )
        try:
            return super().load(
                path,
                env=env,
                device=device,
                custom_objects=custom_objects,
                print_system_info=print_system_info,
                force_reset=force_reset,
                **kwargs,
            )
        except ValueError as error:
            if "Observation spaces do not match" not in str(error):
                raise
            raise ValueError(
                f"{error}. The model was trained on observations of another shape: give it an env that renders at the "
                "same size and stacks as many frames as during training (e.g. VecFrameStack(env, n_stack=3) for "
                "9-channel RGB stacks), or train a new model for this env."
            ) from error


def _with_suffix(path: str | pathlib.Path, suffix: str) -> pathlib.Path:
    """``path``, with SB3's suffix appended to a bare name (as SB3 does)."""
    destination = pathlib.Path(path)
    return destination if destination.suffix else destination.with_suffix(suffix)
