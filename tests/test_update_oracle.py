"""The update of every algorithm equals the recorded oracle (``tests/update_oracle.py`` says what and why)."""

from __future__ import annotations

import pytest
from update_oracle import ENTRIES, fingerprint, load, records, run, summary

from sb3_gaara import VARIANTS
from sb3_gaara.algorithms import ALGORITHMS

RECORDS = records(load())
FINGERPRINT = fingerprint()


def test_the_oracle_covers_every_algorithm_and_variant():
    assert set(RECORDS) == set(ENTRIES)
    assert {entry.algorithm for entry in ENTRIES.values()} == set(ALGORITHMS)
    assert {entry.kwargs["variant"] for entry in ENTRIES.values() if "variant" in entry.kwargs} == set(VARIANTS)
    assert {name for name in ENTRIES if name.startswith("DrQv2/")} >= {"DrQv2/ad10", "DrQv2/ad11"}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_update_equals_the_oracle(name):
    recorded, now = RECORDS[name], summary(run(name))
    assert now["n_updates"] == recorded["n_updates"]
    assert now.get("comparison_lambda") == recorded.get("comparison_lambda")  # Python floats: equal on every machine
    assert set(now["tensors"]) == set(recorded["tensors"])
    assert set(now["logged"]) == set(recorded["logged"])
    for key, values in recorded["logged"].items():
        assert len(now["logged"][key]) == len(values), key
    for tensor, digest in recorded["tensors"].items():
        assert (now["tensors"][tensor]["shape"], now["tensors"][tensor]["dtype"]) == (digest["shape"], digest["dtype"]), tensor
    if recorded["fingerprint"] == FINGERPRINT:
        for tensor, digest in recorded["tensors"].items():
            assert now["tensors"][tensor]["sha256"] == digest["sha256"], tensor
        assert now["logged"] == recorded["logged"]
    else:
        # Another instruction set rounds differently, and Adam turns rounding into steps of the learning rate:
        # only the first loss, computed before any parameter moved, agrees to float rounding.
        first_loss = ENTRIES[name].first_loss
        first = recorded["logged"][first_loss][0]
        assert now["logged"][first_loss][0] == pytest.approx(first, rel=1e-4)
