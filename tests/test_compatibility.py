"""What earlier versions wrote still loads: models and replay buffers saved by sb3-gaara 0.1, its import paths.

``tests/data/saved_0.1.0_*`` were written by sb3-gaara 0.1.0 (before the package was split into ``common``
and ``gaara``): a tiny GAARASAC after 3 updates, its replay buffer, three observations and the actions its
deterministic policy took on them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from conftest import BATCH_SIZE, FakeImageEnv, RecordingLogger

import sb3_gaara
from sb3_gaara import GAARASAC, AugmentedPixelReplayBuffer

DATA = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize("old, new", sorted(sb3_gaara.MOVED_MODULES.items()))
def test_old_module_paths_are_the_new_modules(old, new):
    assert importlib.import_module(f"sb3_gaara.{old}") is importlib.import_module(new)
    parent, _, name = f"sb3_gaara.{old}".rpartition(".")
    assert getattr(importlib.import_module(parent), name) is importlib.import_module(new)


def test_old_class_names_are_the_new_classes_and_canonical_code_never_imports_them():
    from sb3_gaara import _compat
    from sb3_gaara.gaara import auxiliary_losses

    for name, cls in _compat.RENAMED_CLASSES.items():
        assert getattr(auxiliary_losses, name) is cls is getattr(sb3_gaara, name)
    for (module, name), home in _compat.MOVED_NAMES.items():  # e.g. sb3_gaara.common.losses.info_nce_loss
        assert getattr(module, name) is getattr(home, name)
    package = Path(sb3_gaara.__file__).parent
    for path in package.rglob("*.py"):
        if path.name in ("_compat.py", "__init__.py") and path.parent == package:
            continue
        text = path.read_text()
        assert "sb3_gaara._compat" not in text and "import _compat" not in text, path
        assert not any(name in text for name in _compat.RENAMED_CLASSES), path
        for (module, name), _ in _compat.MOVED_NAMES.items():
            assert f"from {module.__name__} import {name}" not in text, path


def test_a_model_and_replay_buffer_saved_by_0_1_load_act_and_train():
    model = GAARASAC.load(DATA / "saved_0.1.0_model.zip", env=FakeImageEnv(), device="cpu")
    assert (model._n_updates, model.comparison_lambda, model.variant) == (3, 0.97, "gaara")
    observations = np.load(DATA / "saved_0.1.0_obs.npy")
    actions, _ = model.predict(observations, deterministic=True)
    np.testing.assert_array_equal(actions, np.load(DATA / "saved_0.1.0_actions.npy"))

    model.load_replay_buffer(DATA / "saved_0.1.0_buffer.pkl")
    buffer = model.replay_buffer
    assert isinstance(buffer, AugmentedPixelReplayBuffer) and buffer.size() == 13
    stacks, _ = buffer.get_stacks(np.arange(3), np.zeros(3, dtype=int))
    np.testing.assert_array_equal(stacks, observations)
    model.set_logger(RecordingLogger())
    model.train(gradient_steps=2, batch_size=BATCH_SIZE)
    assert model._n_updates == 5 and model.comparison_lambda == pytest.approx(0.95)
