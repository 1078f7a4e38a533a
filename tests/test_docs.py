"""The documentation's Python examples run against the package, so that the README and the pages cannot drift from
the API.

Every ```python block of ``README.md``, ``docs/guide/*.md`` and ``docs/modules/*.md`` runs on its own, in a fresh
namespace and a temporary folder, with tiny settings substituted for the published ones:

* ``learn`` stops after :data:`TINY_TIMESTEPS` agent steps (SB3's ``OffPolicyAlgorithm.learn``, which every
  algorithm of the package ends in, gets the smaller ``total_timesteps``);
* ``dmc-*`` episodes last :data:`TINY_EPISODE` simulator steps (``gymnasium.make`` gets ``episode_length``), so
  that evaluations end;
* in the source text, ``device="cuda"`` becomes ``"cpu"``, a ``buffer_size`` larger than :data:`TINY_BUFFER`
  becomes it, and ``n_eval_episodes`` becomes 1.

Everything else (the classes, their arguments and defaults, the env ids and keywords, save / load / predict) is
what the page says. A block that cannot run alone belongs in a ```text or ```bash fence
(docs/misc/contributing_docs.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gymnasium
import pytest
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

ROOT = Path(__file__).resolve().parent.parent
#: the pages whose Python examples run
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs" / "guide").glob("*.md")),
    *sorted((ROOT / "docs" / "modules").glob("*.md")),
]
TINY_TIMESTEPS = 48
TINY_EPISODE = 8
TINY_BUFFER = 2_000
#: examples that plan or train with the papers' full-size latent models (Dreamer's CEM and MPC planners, SLAC and Dreamer
#: side by side): tens of seconds on one core each, so they run in the slow suite
SLOW = {"dreamer.md", "quickstart.md#3"}

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return _PYTHON_BLOCK.findall(path.read_text())


def tiny_source(source: str) -> str:
    """The example with the substitutions of the module docstring applied to its text."""
    source = source.replace('device="cuda"', 'device="cpu"')
    source = re.sub(
        r"buffer_size=([\d_]+)", lambda m: f"buffer_size={min(int(m.group(1).replace('_', '')), TINY_BUFFER)}", source
    )
    return re.sub(r"n_eval_episodes=\d+", "n_eval_episodes=1", source)


def _cases() -> list[Any]:
    cases = []
    for path in DOCUMENTS:
        for index, block in enumerate(python_blocks(path)):
            name = f"{path.name}#{index}"
            marks = [pytest.mark.slow] if name in SLOW or path.name in SLOW else []
            cases.append(pytest.param(path, block, id=name, marks=marks))
    return cases


CASES = _cases()


def test_the_documents_have_examples_and_the_substitutions_apply():
    """The collection finds the blocks it should (a renamed fence or folder would otherwise test nothing), and the
    text substitutions change what they must and only that."""
    names = {case.id.split("#")[0] for case in CASES}
    assert {"README.md", "quickstart.md", "gaara_sac.md", "drq.md", "drqv2.md", "slac.md", "dreamer.md"} <= names
    assert len(CASES) >= 10
    assert tiny_source('X(device="cuda", buffer_size=250_000, n_eval_episodes=10)') == (
        f'X(device="cpu", buffer_size={TINY_BUFFER}, n_eval_episodes=1)'
    )
    assert tiny_source("X(buffer_size=500)") == "X(buffer_size=500)"


@pytest.fixture
def tiny_budgets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[int]:
    """Caps ``learn`` and ``dmc-*`` episodes; returns the list of the budgets ``learn`` was asked for."""
    asked: list[int] = []
    learn = OffPolicyAlgorithm.learn

    def tiny_learn(self: OffPolicyAlgorithm, total_timesteps: int, *args: Any, **kwargs: Any) -> Any:
        asked.append(int(total_timesteps))
        return learn(self, min(int(total_timesteps), TINY_TIMESTEPS), *args, **kwargs)

    make = gymnasium.make

    def tiny_make(env_id: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(env_id, str) and env_id.startswith("dmc-"):
            kwargs.setdefault("episode_length", TINY_EPISODE)
        return make(env_id, *args, **kwargs)

    monkeypatch.setattr(OffPolicyAlgorithm, "learn", tiny_learn)
    monkeypatch.setattr(gymnasium, "make", tiny_make)
    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.chdir(tmp_path)
    return asked


@pytest.mark.parametrize(("path", "block"), CASES)
def test_example_runs(path: Path, block: str, tiny_budgets: list[int]):
    source = tiny_source(block)
    namespace: dict[str, Any] = {"__name__": f"docs_example_{path.stem}"}
    exec(compile(source, f"{path.relative_to(ROOT)} (python block)", "exec"), namespace)
    # A block that trains asked learn() for its budget through SB3's loop (the cap above), so it really trained.
    if ".learn(" in block:
        assert tiny_budgets, "the example called learn(), but SB3's OffPolicyAlgorithm.learn never ran"
