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
    b = verification(cfg, progress=False, pulse_pairs=pp)
    assert "called a different person from their photo: 100.0%" in render(b)
    f.config["theta_thr"] = 181.0
    save_extractor(f, tmp_path / "f.pt")
    a = verification(cfg, progress=False, pulse_pairs=pp)
    from idpulse.evaluation.verification import paired_difference

    d = paired_difference(a, b)  # the same f at two thresholds: the same angles, opposite calls
    assert d["different"]["mean"] == 1.0 and d["different"]["n"] == 5
    assert d["angle"]["mean"] == 0.0 and d["angle"]["ci95"] == (0.0, 0.0)


def test_two_extractors_are_compared_pair_by_pair(tmp_path):
    from idpulse.evaluation.verification import paired_difference, public, render_paired

    root = fake_data(tmp_path / "data", n_ids=6, per_id=3)
    torch.manual_seed(0)
    f = FaceExtractor(backbone="iresnet18", width=0.125)
    cfg = VerificationConfig(data_root=str(root / "celeba"), split="train", pairs=40)
    results = []
    for name, thr in (("a", 181.0), ("b", 0.0)):  # a calls every pair "same", b every pair "different"
        f.config["theta_thr"] = thr
        save_extractor(f, tmp_path / f"{name}.pt")
        cfg.extractor = str(tmp_path / f"{name}.pt")
        results.append(verification(cfg, progress=False))
    d = paired_difference(*results)
    # both are right on half the pairs, but never on the same ones: b - a is +1 on each Diff pair
    # and -1 on each Same pair, so the mean is 0 with the widest spread a paired difference has
    assert results[0]["accuracy"] == results[1]["accuracy"] == 0.5
    assert d["accuracy"]["mean"] == 0.0 and abs(d["accuracy"]["sd"] - 1.0) < 0.02 and d["accuracy"]["n"] == 80
    # an extractor against itself: no difference and a zero-width interval
    same = paired_difference(results[0], results[0])["accuracy"]
    assert same["mean"] == same["sd"] == 0.0 and same["ci95"] == (0.0, 0.0)
    assert "b.pt minus a.pt, on the same pairs: verification +0.0 points" in render_paired(d)
    assert not any(k.startswith("_") for k in public(results[0]))


def test_the_command_writes_the_pairwise_difference(tmp_path, capsys):
    import json

    from idpulse.commands.eval_extractor import main

    root = fake_data(tmp_path / "data", n_ids=6, per_id=3)
    torch.manual_seed(0)
    f = FaceExtractor(backbone="iresnet18", width=0.125)
    f.config["theta_thr"] = 181.0
    save_extractor(f, tmp_path / "a.pt")
    f.config["theta_thr"] = 0.0
    save_extractor(f, tmp_path / "b.pt")
    main([str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--quiet", f"--data_root={root / 'celeba'}",
          "--split=train", "--pairs=20", f"--json={tmp_path / 'out.json'}"])
    out = json.loads((tmp_path / "out.json").read_text())
    assert len(out) == 2 and "minus_first" not in out[0] and out[1]["minus_first"]["accuracy"]["n"] == 40
    assert "b.pt minus a.pt, on the same pairs" in capsys.readouterr().out


def test_extractors_named_alike_are_told_apart_by_their_folders():
    """Run folders all hold an `extractor.pt`: the printed names keep as much of each path as it takes."""
    from idpulse.evaluation.verification import render_paired, short_names

    paths = ["runs/a/cut2/extractor.pt", "runs/b/cut2/extractor.pt", "runs/a/cut1/extractor.pt",
             "checkpoints/extractor_f.pt"]
    assert short_names(paths) == {"runs/a/cut2/extractor.pt": "a/cut2/extractor.pt",
                                  "runs/b/cut2/extractor.pt": "b/cut2/extractor.pt",
                                  "runs/a/cut1/extractor.pt": "cut1/extractor.pt",
                                  "checkpoints/extractor_f.pt": "extractor_f.pt"}
    assert short_names(["x.pt", "x.pt"]) == {"x.pt": "x.pt"}  # one path twice: nothing to tell apart
    d = {"a": paths[0], "b": paths[2], "accuracy": {"mean": 0.01, "ci95": (0.0, 0.02)}}
    assert render_paired(d, short_names(paths)).startswith("cut1/extractor.pt minus a/cut2/extractor.pt")
