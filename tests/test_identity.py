"""The dlib identity judge (the `judges` extra) on real photos of the shared CelebA crops."""

import pytest
import torch
from conftest import need_shared

pytest.importorskip("dlib", reason="the identity judge needs the judges extra (dlib-bin)")


def test_same_person_is_closer_than_different_people():
    need_shared("data", "celeba", "images")
    from idpulse.data import CelebA
    from idpulse.evaluation.identity import DlibIdentity

    ds = CelebA(split="test")
    by_id = {}
    for i, k in enumerate(ds.labels["identity"][:3000]):
        by_id.setdefault(int(k), []).append(i)
    pairs = [v[:2] for v in by_id.values() if len(v) >= 2][:8]
    judge = DlibIdentity()
    same = [judge.distance(ds[a]["image"], ds[b]["image"]) for a, b in pairs]
    diff = [judge.distance(ds[pairs[i][0]]["image"], ds[pairs[i + 1][0]]["image"]) for i in range(len(pairs) - 1)]
    assert sum(same) / len(same) < sum(diff) / len(diff)
    assert sum(d < 0.6 for d in same) >= len(same) // 2
    assert judge.distance(ds[0]["image"], ds[0]["image"]) < 1e-6
    assert torch.isfinite(torch.tensor(same)).all()
