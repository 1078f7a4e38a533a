"""Gymnasium registration of the ``dmc-<domain>-<task>`` ids.

Registration only records entry-point strings: MuJoCo, dm_control and an OpenGL backend are
loaded when an environment is first made, not when ``sb3_gaara`` is imported.
"""

from __future__ import annotations

import gymnasium as gym

from sb3_gaara.envs.tasks import DMC_TASKS, dmc_env_id

#: Entry point of every ``dmc-*`` id (a string, so that registering imports nothing).
DMC_ENTRY_POINT = "sb3_gaara.envs.dmc:DMCEnv"


def register_dmc_envs() -> list[str]:
    """Register ``dmc-<domain>-<task>`` for every DeepMind Control suite task and return the ids.

    Safe to call repeatedly (``import sb3_gaara`` and the rl-zoo3 start-up hook both call it):
    ids already registered, by this function or by the user, are left as they are.
    """
    env_ids = []
    for domain_name, task_name in DMC_TASKS:
        env_id = dmc_env_id(domain_name, task_name)
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=DMC_ENTRY_POINT,
                kwargs={"domain_name": domain_name, "task_name": task_name},
            )
        env_ids.append(env_id)
    return env_ids
