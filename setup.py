"""Build step that ships the rl-zoo3 start-up hook; everything else is configured in pyproject.toml.

``python -m rl_zoo3.train --algo gaara_sac`` must work without flags, but rl-zoo3 validates
``--algo`` before any user code runs. The wheel therefore installs, next to the package,

- ``sb3_gaara_zoo.pth``: one line, ``import _sb3_gaara_startup``, run by ``site`` at interpreter start;
- ``_sb3_gaara_startup.py``: a copy of ``sb3_gaara/zoo/_startup.py`` as a top-level module, so that
  the start-up import does not execute ``sb3_gaara/__init__.py`` (which imports torch).

setuptools has no declarative way to put files at the root of ``site-packages``, hence this
``build_py`` extension. Files placed in the build directory are part of the wheel.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

STARTUP_SOURCE = os.path.join("sb3_gaara", "zoo", "_startup.py")
STARTUP_MODULE = "_sb3_gaara_startup"
PTH_NAME = "sb3_gaara_zoo.pth"


class BuildPyWithStartupHook(build_py):
    """``build_py`` that also writes the start-up hook module and its ``.pth`` file into the build directory."""

    def run(self) -> None:
        super().run()
        target = self._hook_directory()
        if target is None:
            return
        self.mkpath(target)
        self.copy_file(STARTUP_SOURCE, os.path.join(target, f"{STARTUP_MODULE}.py"), preserve_mode=False)
        pth_path = os.path.join(target, PTH_NAME)
        self.execute(_write_pth, (pth_path,), f"writing {pth_path}")

    def _hook_directory(self) -> str | None:
        """Where the two files go: the build directory, or for an editable install the wheel being assembled.

        An editable wheel only maps packages onto the source tree and drops other files of the build
        directory; setuptools' ``editable_wheel`` points the ``install`` command at the unpacked wheel, so
        the files are written there instead. The module is then a snapshot of ``sb3_gaara/zoo/_startup.py``:
        reinstall after changing it. If that set-up ever changes, the editable install simply lacks the
        hook and ``python -m sb3_gaara.zoo train ...`` (or ``sb3_gaara.zoo.register()``) still works.
        """
        if not self.editable_mode:
            return self.build_lib
        install_lib = getattr(self.distribution.get_command_obj("install"), "install_lib", None)
        return install_lib if isinstance(install_lib, str) and os.path.isdir(install_lib) else None


def _write_pth(path: str) -> None:
    with open(path, "w", encoding="utf-8") as pth_file:
        pth_file.write(f"import {STARTUP_MODULE}\n")


setup(cmdclass={"build_py": BuildPyWithStartupHook})
