"""The update oracle: what a few dozen updates of every algorithm produce from a fixed seed, recorded once and kept.

A refactor must not change the update. ``python tests/update_oracle.py --record`` runs each entry of
:data:`ENTRIES` -- every encoder-training variant of GAARASAC (SACAE and CURLSAC are GAARASAC's ``sac_ae`` and
``contrastive`` variants, and are built through their own classes), DrQ, each AD(a, d) variant of DrQv2, SLAC and
Dreamer -- as a tiny model on the fake image env: 30 agent steps of ``learn()`` after ``learning_starts`` at the
algorithm's schedule (GAARASAC, DrQ, SLAC and Dreamer here update once per agent step, DrQv2 once per two, its
default), then 3 updates in one ``train()`` call. It writes to ``tests/data/update_oracle.json``:

- the SHA-256 of every parameter and every optimizer state tensor (and, for the models that are not GAARASACs, of
  every tensor and module the model holds outside its policy, such as SLAC's ``log_ent_coef``; a GAARASAC, DrQ
  included, is summarised as the first records were), GAARASAC's comparison weight, the update count and every
  logged ``train/`` value: equal bit for bit on the machine that recorded them;
- the machine's fingerprint: torch's version and the CPU features its kernels dispatch on.

``--record NAME ...`` records only the entries named (a new algorithm, or one whose update changed on purpose) and
keeps the others' records; each record so made carries the fingerprint of the machine that made it, so that entries
recorded on different machines live in one file (a record without its own fingerprint has the file's).

Float results depend on the CPU's instruction set (oneDNN picks other kernels, sums round in another
order), so ``tests/test_update_oracle.py`` compares bit for bit where the record's fingerprint matches and, on
another machine, what every CPU computes alike: the comparison weight (Python arithmetic), the update
count, the tensors' names, shapes and dtypes, the logged keys and how many values each has, and the entry's first
loss (:attr:`Entry.first_loss`, computed before any parameter moved) within float rounding. An AVX-512 machine
runs the kernels of an AVX2 one under ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``, and reproduces its
records bit for bit: how to check the records of a machine one does not have.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch as th

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import RecordingLogger, cpu_flags, tiny_model
from test_every_algorithm import FAST_SCHEDULE

from sb3_gaara import AD_VARIANTS, CURLSAC, GAARASAC, SACAE, VARIANTS, DrQ, DrQv2
from sb3_gaara.dreamer import Dreamer
from sb3_gaara.slac import SLAC

ORACLE_PATH = Path(__file__).resolve().parent / "data" / "update_oracle.json"
#: updates inside ``learn()``, then in one ``train()`` call
LEARN_UPDATES, TRAIN_UPDATES = 30, 3
#: CPU features that decide which float kernels run
_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def fingerprint() -> dict[str, Any]:
    """torch's version and the CPU features its kernels dispatch on."""
    flags = cpu_flags()
    return {
        "torch": th.__version__,
        "machine": platform.machine(),
        "cpu_capability": th.backends.cpu.get_cpu_capability(),
        "cpu_flags": sorted(flag for flag in _CPU_FLAGS if flag in flags),
    }


class Entry(NamedTuple):
    """One run of the oracle."""

    #: the class trained
    algorithm: type
    #: its arguments beyond :func:`conftest.tiny_model`'s
    kwargs: dict[str, Any]
    #: the logged ``train/`` key whose first value is computed before any parameter moved (the first ``train()`` call
    #: makes one update): the one value that agrees across instruction sets, to float rounding
    first_loss: str


#: GAARASAC's comparison weight decays within the run, so that its schedule is pinned too
_GAARA_KWARGS = {"comparison_lambda_decay": 0.01, "comparison_lambda_min": 0.75}
#: GAARASAC's variants whose class of their own has them as default
_VARIANT_CLASSES: dict[str, type] = {SACAE.default_variant: SACAE, CURLSAC.default_variant: CURLSAC}

#: Every entry of the oracle by name: GAARASAC's variants under their :data:`~sb3_gaara.VARIANTS` key, then the other
#: algorithms of :data:`sb3_gaara.algorithms.ALGORITHMS` under their class name, DrQv2 once per AD(a, d) variant of
#: :data:`~sb3_gaara.AD_VARIANTS`. SLAC and Dreamer take the test suite's fast schedule (short sequences, small
#: batches), with one update per agent step and no model pretraining, so that their first train() call makes one
#: update whose losses are computed before anything moved.
ENTRIES: dict[str, Entry] = {
    **{
        variant: Entry(_VARIANT_CLASSES.get(variant, GAARASAC), {"variant": variant, **_GAARA_KWARGS}, "train/critic_loss")
        for variant in VARIANTS
    },
    "DrQ": Entry(DrQ, {}, "train/critic_loss"),
    **{f"DrQv2/{key}": Entry(DrQv2, ad.kwargs, "train/critic_loss") for key, ad in AD_VARIANTS.items()},
    "SLAC": Entry(SLAC, {**FAST_SCHEDULE["SLAC"], "model_pretraining_steps": 0}, "train/model_loss"),
    "Dreamer": Entry(Dreamer, {**FAST_SCHEDULE["Dreamer"], "train_freq": 1, "gradient_steps": 1}, "train/model_loss"),
}


def section(name: str) -> str:
    """The part of the oracle file that holds entry ``name``: ``variants`` for GAARASAC's, ``algorithms`` else."""
    return "variants" if name in VARIANTS else "algorithms"


def run(name: str) -> Any:
    """The oracle's run of entry ``name``, on one torch thread."""
    entry = ENTRIES[name]
    threads = th.get_num_threads()
    th.set_num_threads(1)
    try:
        model = tiny_model(entry.algorithm, **entry.kwargs)
        model.set_logger(RecordingLogger())
        model.learn(total_timesteps=model.learning_starts + LEARN_UPDATES)
        np.random.seed(11)
        th.manual_seed(11)
        model.train(gradient_steps=TRAIN_UPDATES, batch_size=model.batch_size)
    finally:
        th.set_num_threads(threads)
    return model


def _digest(tensor: th.Tensor) -> dict[str, Any]:
    data = tensor.detach().cpu().contiguous()
    return {
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest(),
    }


def _optimizers(model: Any) -> dict[str, th.optim.Optimizer]:
    """Every optimizer of ``model`` by name: GAARASAC's in the order of its ``optimizers()`` (``optimizer<i>``), the
    others' found on the model and on the policy's modules (``ent_coef_optimizer``, ``policy.critic.optimizer``)."""
    if isinstance(model, GAARASAC):
        return {f"optimizer{index}": optimizer for index, optimizer in enumerate(model.optimizers())}
    found: dict[str, th.optim.Optimizer] = {}
    candidates = list(vars(model).items())
    for path, module in model.policy.named_modules(prefix="policy"):
        candidates += [(f"{path}.{attribute}", value) for attribute, value in vars(module).items()]
    for name, value in candidates:
        if isinstance(value, th.optim.Optimizer) and all(value is not known for known in found.values()):
            found[name] = value
    return found


def summary(model: Any) -> dict[str, Any]:
    """What the oracle keeps of a run (see the module docstring)."""
    tensors = {f"policy.{name}": _digest(value) for name, value in model.policy.state_dict().items()}
    if isinstance(model, GAARASAC):
        for name, module in model.auxiliary_losses.items():
            for key, value in module.state_dict().items():
                tensors[f"auxiliary_losses.{name}.{key}"] = _digest(value)
    else:
        # Tensors and modules of the model outside its policy (SLAC's temperature).
        in_policy = {id(module) for module in model.policy.modules()}
        for name, value in vars(model).items():
            if isinstance(value, th.Tensor):
                tensors[name] = _digest(value)
            elif isinstance(value, th.nn.Module) and id(value) not in in_policy:
                tensors.update({f"{name}.{key}": _digest(item) for key, item in value.state_dict().items()})
    for name, optimizer in _optimizers(model).items():
        for param_index, state in optimizer.state_dict()["state"].items():
            for key, value in state.items():
                tensors[f"{name}.{param_index}.{key}"] = _digest(value)
    logged = {
        key: [float(value) for value in values]
        for key, values in sorted(model.logger.history.items())
        if key.startswith("train/")
    }
    result: dict[str, Any] = {"n_updates": model._n_updates, "tensors": tensors, "logged": logged}
    if isinstance(model, GAARASAC):
        result["comparison_lambda"] = model.comparison_lambda
    return result


def records(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every record of the oracle file ``data`` by entry name, each with its ``fingerprint``."""
    found = {}
    for part in ("variants", "algorithms"):
        for name, recorded in data.get(part, {}).items():
            found[name] = {"fingerprint": data.get("fingerprint"), **recorded}
    return found


def record(names: list[str] | None = None, path: Path = ORACLE_PATH) -> None:
    """Record every entry, in a new file with this machine's fingerprint, or only ``names`` into the existing file,
    each with this machine's fingerprint, keeping the other records."""
    unknown = sorted(set(names or ()) - set(ENTRIES))
    if unknown:
        raise SystemExit(f"no oracle entry {unknown}: name some of {sorted(ENTRIES)}, or none to record them all")
    if names:
        data = load(path)
        for name in names:
            print(f"recording {name}", flush=True)
            data.setdefault(section(name), {})[name] = {"fingerprint": fingerprint(), **summary(run(name))}
    else:
        data = {"fingerprint": fingerprint()}
        for name in ENTRIES:
            print(f"recording {name}", flush=True)
            data.setdefault(section(name), {})[name] = summary(run(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"recorded {path} on {fingerprint()}")


def load(path: Path = ORACLE_PATH) -> dict[str, Any]:
    return json.loads(path.read_text())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--record",
        nargs="*",
        metavar="NAME",
        help=f"(re)write {ORACLE_PATH}: every entry, or only those named (of {', '.join(ENTRIES)})",
    )
    arguments = parser.parse_args()
    if arguments.record is not None:
        record(arguments.record)
    else:
        parser.print_help()
