"""Verification accuracy of an extractor at its own theta_thr (the model cards' number)."""

import torch
from test_train_extractor import fake_data

from idpulse.evaluation.verification import VerificationConfig, render, verification
from idpulse.extractor import FaceExtractor, save_extractor


def test_accuracy_at_theta_thr(tmp_path):
    root = fake_data(tmp_path / "data", n_ids=6, per_id=3)
    torch.manual_seed(0)
    f = FaceExtractor(backbone="iresnet18", width=0.125)
    save_extractor(f, tmp_path / "f.pt")
    cfg = VerificationConfig(extractor=str(tmp_path / "f.pt"), data_root=str(root / "celeba"), split="train",
                             pairs=40)
    r = verification(cfg, progress=False)
    assert r["same"]["n"] == r["diff"]["n"] == 40 and 0 <= r["accuracy"] <= r["best_threshold_accuracy"] <= 1
    # at the best threshold of these very pairs, the accuracy is that threshold's: same iff angle < thr
    f.config["theta_thr"] = r["best_threshold"]
    save_extractor(f, tmp_path / "f.pt")
    r2 = verification(cfg, progress=False)
    assert abs(r2["accuracy"] - r["best_threshold_accuracy"]) < 1e-9
    # everything called "same" (threshold past every angle): exactly the Same half is right
    f.config["theta_thr"] = 181.0
    save_extractor(f, tmp_path / "f.pt")
    assert verification(cfg, progress=False)["accuracy"] == 0.5
    assert "verification on 40 Same + 40 Diff pairs" in render(r2)
