"""Run an rl-zoo3 script with sb3-gaara registered, without relying on the start-up hook.

``python -m sb3_gaara.zoo SCRIPT [ARGS...]`` is ``python -m rl_zoo3.SCRIPT [ARGS...]`` after
:func:`sb3_gaara.zoo.register`, e.g. ``python -m sb3_gaara.zoo train --algo gaara_sac --env dmc-cheetah-run``.
"""

from __future__ import annotations

import runpy
import sys

from sb3_gaara.zoo import register

SCRIPTS = ("train", "enjoy", "record_video", "record_training", "push_to_hub", "load_from_hub", "benchmark")


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in SCRIPTS:
        raise SystemExit(f"usage: python -m sb3_gaara.zoo {{{','.join(SCRIPTS)}}} [rl-zoo3 arguments...]")
    register()
    script = argv[0]
    sys.argv = [f"rl_zoo3.{script}", *argv[1:]]
    runpy.run_module(f"rl_zoo3.{script}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
