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


def test_pulse_pairs_are_searched_once_per_face_and_judged_at_theta_thr(tmp_path):
    from test_train_extractor import tiny_generator

    from idpulse.evaluation.verification import called_different, pulse_pair_faces

    root = fake_data(tmp_path / "data", n_ids=6, per_id=3)
    gen = tiny_generator(tmp_path / "g.pt")
    over = dict(data_root=str(root / "celeba"), split="train", pulse_pairs=5, thumbnail_size=4)
    cfg = VerificationConfig(**over, batch=2)
    cfg.generator.checkpoint, cfg.pulse.steps = str(gen), 3
    pp = pulse_pair_faces(cfg, progress=False)
    assert pp["photos"].shape == pp["results"].shape == (5, 3, 112, 112) and pp["accepted"].shape == (5,)
    # each face's start follows its item, not its batch: one batch of 5 gives the same results
    one = VerificationConfig(**over, batch=5)
    one.generator.checkpoint, one.pulse.steps = str(gen), 3
    assert torch.equal(pulse_pair_faces(one, progress=False)["results"], pp["results"])
    torch.manual_seed(0)
    f = FaceExtractor(backbone="iresnet18", width=0.125).eval()
    f.config["theta_thr"] = 181.0  # past every angle: every result called the photo's person
    assert called_different(f, pp, "cpu")["different"] == 0.0
    f.config["theta_thr"] = 0.0  # every result called someone else
    r = called_different(f, pp, "cpu")
    assert r["different"] == 1.0 and r["n"] == 5
    save_extractor(f, tmp_path / "f.pt")
    cfg.extractor, cfg.pairs = str(tmp_path / "f.pt"), 10
    assert "called a different person from their photo: 100.0%" in render(verification(cfg, progress=False,
                                                                                        pulse_pairs=pp))
