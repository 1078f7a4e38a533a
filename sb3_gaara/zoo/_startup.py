"""Interpreter start-up hook that registers sb3-gaara with rl-zoo3 when, and only if, rl-zoo3 is imported.

rl-zoo3 has no plugin mechanism: ``--algo`` is checked by argparse against ``rl_zoo3.utils.ALGOS``
before any user code runs, and hyper-parameters are read from rl-zoo3's own folder. So that
``python -m rl_zoo3.train --algo gaara_sac --env dmc-cheetah-run`` works with no extra flag, the
wheel ships ``sb3_gaara_zoo.pth``, whose single line ``import _sb3_gaara_startup`` runs this module
in every interpreter of the environment. This module then only puts a finder on ``sys.meta_path``
that watches for three rl-zoo3 modules; when one of them has executed, the matching function of
:mod:`sb3_gaara.zoo.patches` amends it (see there for what is patched).

Because it runs in every Python process, this module imports nothing beyond ``sys`` and ``os``
(both already loaded by ``site``): no torch, no rl-zoo3, not even ``sb3_gaara``, whose
``__init__`` loads torch, nor ``typing``, which alone would add about 20 ms to every start-up.
In the wheel it is a top-level module (a copy of this file, made by ``setup.py``) for the same
reason: importing ``sb3_gaara.zoo._startup`` would run that ``__init__``.

Set ``SB3_GAARA_ZOO_HOOK=0`` to disable the hook, e.g. to debug rl-zoo3 on its own.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: rl-zoo3 module -> function of ``sb3_gaara.zoo.patches`` that amends it once it has executed.
PATCHED_MODULES: dict[str, str] = {
    "rl_zoo3.utils": "patch_utils",
    "rl_zoo3.hyperparams_opt": "patch_hyperparams_opt",
    "rl_zoo3.exp_manager": "patch_exp_manager",
}
PATCHES_MODULE = "sb3_gaara.zoo.patches"
DISABLE_VARIABLE = "SB3_GAARA_ZOO_HOOK"


def apply_patch(module: Any) -> None:
    """Run the patch for ``module``; report a failure as a warning so that rl-zoo3 stays usable without us."""
    try:
        import importlib

        patches = importlib.import_module(PATCHES_MODULE)
        getattr(patches, PATCHED_MODULES[module.__name__])(module)
    except Exception as error:
        import warnings

        warnings.warn(
            f"sb3-gaara could not register its algorithms and environments with rl-zoo3 ({module.__name__}): "
            f"{error!r}. Reinstall sb3-gaara, or set {DISABLE_VARIABLE}=0 to silence this.",
            RuntimeWarning,
            stacklevel=2,
        )


class _PatchingLoader:
    """Wrap the loader of a watched module: execute it as usual, then patch it.

    Every other loader attribute (``get_code``, ``get_source``, ``is_package``...) is the original's,
    so tracebacks, ``inspect`` and ``runpy`` see the module as before.
    """

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        apply_patch(module)


class RlZooFinder:
    """``sys.meta_path`` finder that hands the watched rl-zoo3 modules a :class:`_PatchingLoader`.

    For any other name it returns ``None`` straight away, which costs one set look-up per import.
    """

    def __init__(self) -> None:
        self._resolving: set[str] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in PATCHED_MODULES or fullname in self._resolving:
            return None
        # Ask the finders after this one (the regular path finder, editable-install finders...).
        self._resolving.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._resolving.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _PatchingLoader(spec.loader)  # type: ignore[assignment]  # duck-typed: see the class
        return spec


def install() -> None:
    """Install the finder (once), and patch the watched modules that are already imported."""
    if not any(isinstance(finder, RlZooFinder) or type(finder).__name__ == "RlZooFinder" for finder in sys.meta_path):
        sys.meta_path.insert(0, RlZooFinder())
    for name in PATCHED_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            apply_patch(module)


if os.environ.get(DISABLE_VARIABLE, "1").strip().lower() not in {"0", "false", "no", "off"}:
    install()
