"""Algorithm 2 end to end on a tiny synthetic CelebA/UTKFace layout: under torchrun with two
CPU ranks, and killed with SIGKILL then resumed to the same weights as an uninterrupted run."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from idpulse.data import CELEBA_ATTRIBUTES
from idpulse.data.synthetic import celeba_utkface, ms1m_pack
from idpulse.extractor import load_extractor
from idpulse.extractor.losses import best_angle_threshold
from idpulse.generator.stylegan import Generator
from idpulse.generator.weights import save_generator

ROOT = Path(__file__).resolve().parents[1]


fake_data = celeba_utkface  # CelebA's file layout and UTKFace's naming, noise images, template landmarks


def tiny_generator(path: Path) -> Path:
    torch.manual_seed(0)
    G = Generator(resolution=16, fmap_base=32, fmap_max=16, mapping_layers=2)
    G.fit_gaussian(1000)
    save_generator(G, path)
    return path


def args(data: Path, gen: Path, run: Path, steps: int = 6) -> list[str]:
    return [str(ROOT / "scripts" / "train_extractor.py"), f"--data_root={data}", f"--generator.checkpoint={gen}",
            f"--run_dir={run}", "--device=cpu", "--model.width=0.125", "--meta_epochs=2",
            f"--steps_per_meta_epoch={steps}", "--batch.arc=4", "--batch.siam=2", "--batch.race=2", "--batch.attr=2",
            "--lr=0.01", "--threshold_pairs=8", "--checkpoint_every=1", "--lookalike.num_identities=3",
            "--lookalike.thumbnail_size=4", "--lookalike.pulse.steps=2", "--lookalike.batch=2",
            "--lookalike.pulse.eps=1.0"]  # every 2-step search of the random generator "matches": all are lookalikes


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("alg2")
    return fake_data(d / "data"), tiny_generator(d / "g.pt"), d


def test_best_angle_threshold():
    thr, acc = best_angle_threshold(torch.tensor([10.0, 20.0, 30.0]), torch.tensor([50.0, 60.0, 25.0]))
    assert 20 < thr < 25 or 30 < thr < 50
    assert acc == pytest.approx(5 / 6)
    thr, acc = best_angle_threshold(torch.tensor([10.0, 20.0]), torch.tensor([80.0, 90.0]))
    assert 20 < thr < 80 and acc == 1.0


def test_torchrun_two_ranks(setup):
    data, gen, d = setup
    run = d / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", *args(data, gen, run)],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    f = load_extractor(run / "extractor.pt")
    assert f.race_head is not None and f.attr_head is not None
    hist = json.loads((run / "history.json").read_text())
    # L_siam on in meta-epoch 2, on meta-epoch 1's 3 pairs and its own 3 plain + 3 L_sim-optimised pairs
    assert [h["meta_epoch"] for h in hist] == [1, 2] and hist[1]["lookalikes"] == 9
    kinds = {rec["kind"] for m in (run / "lookalikes" / "meta2").glob("manifest.rank*.json")
             for rec in json.loads(m.read_text())}
    assert kinds == {"pulse", "sim"}
    manifests = sorted((run / "lookalikes" / "meta1").glob("manifest.rank*.json"))
    assert len(manifests) == 2  # both ranks generated their share
    items = [rec["item"] for m in manifests for rec in json.loads(m.read_text())]
    assert sorted(items) == list(range(6))  # 3 pairs x 2 images, no duplicates
    assert "world_size: 2" in (run / "run.yaml").read_text()


def test_killed_run_resumes_to_the_same_weights(setup):
    data, gen, d = setup
    full = d / "full"
    r = subprocess.run([sys.executable, *args(data, gen, full, steps=8)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    killed = d / "killed"
    state = killed / "state.pt"
    proc = subprocess.Popen([sys.executable, *args(data, gen, killed, steps=8)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:  # kill once training of meta-epoch 2 is under way
        if state.is_file():
            try:
                c = torch.load(state, weights_only=True)["counters"]
            except Exception:
                c = None
            if c and c["meta_epoch"] == 2 and 0 < c["step"] < 6:
                break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "extractor.pt").is_file(), "the run finished before it could be killed"
    r = subprocess.run([sys.executable, *args(data, gen, killed, steps=8)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" in r.stdout
    a = torch.load(full / "extractor.pt", weights_only=True)
    b = torch.load(killed / "extractor.pt", weights_only=True)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    assert a["config"]["theta_thr"] == b["config"]["theta_thr"]


fake_pack = ms1m_pack  # an insightface-style pack (train.rec/idx + property), written per the RecordIO format


def test_arcface_identities_from_a_recordio_pack(setup):
    """arc_data=recordio: L_arc trains on the pack's identities (4 here, against the fake CelebA's 6),
    streamed from train.rec; a mismatched `property` is a one-line error, not an index crash."""
    from idpulse.config import load_config
    from idpulse.errors import UserError
    from idpulse.training.extractor_loop import ExtractorTrainConfig, training_loop

    data, gen, d = setup
    ms1m = fake_pack(d / "ms1m")
    over = [a for a in args(data, gen, d / "rec")[1:] if not a.startswith("--meta_epochs")]
    cfg = load_config(ExtractorTrainConfig, None, [*over, "--meta_epochs=1", "--use_siam=false", "--use_race=false",
                                                   "--use_attr=false", "--arc_data=recordio", f"--arc_root={ms1m}",
                                                   "--data_threads=2"])
    out = training_loop(cfg)
    state = torch.load(d / "rec" / "state.pt", weights_only=True)
    assert state["net"]["arc.weight"].shape[0] == 4
    assert "identities: 4" in (d / "rec" / "run.yaml").read_text()
    assert load_extractor(out).race_head is None
    (ms1m / "property").write_text("2,112,112")  # the pack's labels go up to 3
    cfg.run_dir = str(d / "rec_bad")
    with pytest.raises(UserError, match="property"):
        training_loop(cfg)


def test_mixed_batch_is_one_backbone_pass():
    """Algorithm 1's mixed mini-batch goes through the backbone once, so batch norm's running
    statistics are those of the whole mix (separate passes leave them to the last part)."""
    from idpulse.config import load_config
    from idpulse.data import UTKFACE_RACES
    from idpulse.extractor import FaceExtractor
    from idpulse.training.extractor_loop import ExtractorTrainConfig, Net

    torch.manual_seed(0)
    f = FaceExtractor(width=0.125, race_classes=UTKFACE_RACES, attribute_names=CELEBA_ATTRIBUTES)
    net = Net(f, 5, load_config(ExtractorTrainConfig, None, []))
    calls = []
    f.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    x = torch.rand(12, 3, 112, 112)
    batch = {"arc_x": x[:4], "arc_y": torch.tensor([0, 1, 2, 3]), "race_x": x[4:6], "race_y": torch.tensor([0, 1]),
             "attr_x": x[6:8], "attr_y": torch.ones(2, 40), "attr_m": torch.ones(2, 40, dtype=torch.bool),
             "siam_x": x[8:10], "siam_gx": x[10:12], "siam_x2": x[:2], "siam_gx2": x[2:4]}
    out = net(batch, 60.0, 10.0)
    assert calls == [4 + 2 + 2 + 5 * 2] and set(out) == {"arc", "race", "attr", "siam"}
    assert all(torch.isfinite(v) for v in out.values())
    net.eval()  # the terms match per-part passes in eval mode, where batch norm uses fixed statistics
    out = net(batch, 60.0, 10.0)
    alone = f.race_head.loss(f(batch["race_x"]), batch["race_y"]).mean()
    assert torch.allclose(out["race"], alone, atol=1e-5)


def _faces(n: int = 4, size: int = 16):
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(3, size, size, generator=g)} for _ in range(n)]


def test_only_results_within_eps_are_lookalikes(tmp_path):
    """A failed search is retried from fresh starts and, failing still, recorded and left out of L_siam;
    f is frozen while it steers the L_sim searches and handed back to training as it was."""
    from idpulse.align import FixedAlign
    from idpulse.extractor import FaceExtractor
    from idpulse.pulse.config import PulseConfig
    from idpulse.training.extractor_data import load_siam
    from idpulse.training.lookalike import LookalikeConfig, build_lookalikes

    torch.manual_seed(0)
    G = Generator(resolution=16, fmap_base=32, fmap_max=16, mapping_layers=2)
    G.fit_gaussian(1000)
    f = FaceExtractor(width=0.125).train()
    flags = [q.requires_grad for q in f.parameters()]  # (insightface's feature BN keeps its scale frozen)
    pairs = [(0, 1), (2, 3)]
    impossible = LookalikeConfig(thumbnail_size=4, batch=3,
                                 pulse=PulseConfig(num_seeds=1, steps=2, eps=1e-12, retries=1))
    recs = build_lookalikes(tmp_path / "lookalikes" / "meta1", G, _faces(), pairs, impossible, extractor=f,
                            align=FixedAlign(16))
    assert len(recs) == 8 and not any(r["success"] for r in recs)
    assert {r["attempts"] for r in recs} == {2} and {r["start"] for r in recs} <= {0, 1}
    assert f.training and [q.requires_grad for q in f.parameters()] == flags and any(flags)
    assert all(q.grad is None for q in f.parameters())  # frozen while searching: no weight gradients
    assert load_siam(tmp_path, 1, G.resolution, "cpu") is None  # no lookalike at all
    easy = LookalikeConfig(thumbnail_size=4, pulse=PulseConfig(num_seeds=1, steps=2, eps=1.0, retries=1), batch=3)
    recs = build_lookalikes(tmp_path / "lookalikes" / "meta2", G, _faces(), pairs, easy)
    assert all(r["success"] and r["attempts"] == 1 and r["start"] == 0 for r in recs)
    siam = load_siam(tmp_path, 2, G.resolution, "cpu")
    assert len(siam[0]) == 2  # meta-epoch 2's two plain pairs; meta-epoch 1 gave none


def test_a_lookalikes_start_follows_its_source_not_its_chunk(tmp_path):
    from idpulse.pulse.config import PulseConfig
    from idpulse.training.lookalike import LookalikeConfig, build_lookalikes

    torch.manual_seed(0)
    G = Generator(resolution=16, fmap_base=32, fmap_max=16, mapping_layers=2)
    G.fit_gaussian(1000)
    faces = _faces()
    cfg = LookalikeConfig(thumbnail_size=4, pulse=PulseConfig(num_seeds=1, steps=2, eps=1.0, retries=0))
    a = build_lookalikes(tmp_path / "a", G, faces, [(0, 1), (2, 3)], dataclasses.replace(cfg, batch=4))
    b = build_lookalikes(tmp_path / "b", G, faces, [(2, 3), (0, 1)], dataclasses.replace(cfg, batch=1))
    loss_a = {r["source"]: r["ds_loss"] for r in a}
    loss_b = {r["source"]: r["ds_loss"] for r in b}
    assert loss_a == pytest.approx(loss_b, rel=1e-4)
    assert len(set(loss_a.values())) == 4  # and every source its own start


def _cli(*argv):
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=900)


def test_resuming_with_other_data_settings_or_a_truncated_state_is_one_line(setup):
    data, gen, d = setup
    run = d / "resume_checks"
    base = [*args(data, gen, run, steps=2), "--meta_epochs=1", "--use_siam=false", "--checkpoint_every=1"]
    r = _cli(*base, "--max_images=12")
    assert r.returncode == 0, r.stderr[-3000:]
    state = run / "state.pt"
    before = state.read_bytes()
    for changed, key in (("--max_images=9", "max_images"), (f"--data_root={d}", "data_root"),
                         ("--arc_data=recordio", "arc_data"), ("--lr=0.5", "lr")):
        r = _cli(*base, "--max_images=12", changed)
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert r.returncode == 2 and len(err) == 1 and key in err[0] and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert state.read_bytes() == before  # nothing lost
    r = _cli(*base, "--max_images=12", "--device=cpu", "--log_every=1")  # where and how often it logs may change
    assert r.returncode == 0, r.stderr[-3000:]
    state.write_bytes(before[: len(before) // 2])  # a state.pt cut short (a full disk, a copy that broke off)
    r = _cli(*base, "--max_images=12")
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(err) == 1 and "state.pt" in err[0] and "Traceback" not in r.stderr
    assert state.stat().st_size == len(before) // 2  # left as it was, for the user to inspect


def test_non_positive_sizes_are_config_errors(setup):
    data, gen, d = setup
    for bad in ("--batch.arc=0", "--lookalike.batch=0", "--meta_epochs=0", "--lookalike.pulse.retries=-1"):
        r = _cli(*args(data, gen, d / "bad"), bad)
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        name = bad[2:].split("=")[0]
        assert r.returncode == 2 and len(err) == 1 and f"'{name}' must be at least" in err[0], r.stderr[-2000:]


def test_lsiam_aligns_each_lookalike_by_its_recorded_landmarks(tmp_path):
    """A detected alignment's landmarks go into the manifest and L_siam's reader warps by them; a
    result with no face found (None), or from an older manifest (no key), takes the fixed warp."""
    from idpulse.align import FixedAlign, crop_template
    from idpulse.data.preload import align_to_arcface
    from idpulse.imageio import save_png
    from idpulse.training.extractor_data import load_siam

    folder = tmp_path / "lookalikes" / "meta1"
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(3, 32, 32, generator=g) for _ in range(4)]
    moved = (crop_template(32) + [3.0, -2.0]).tolist()  # a face found 3 px right, 2 px up of the template
    recs = []
    for i, lm in enumerate([moved, None, moved, "absent"]):
        save_png(imgs[i], folder / f"{i}.png")
        r = {"item": i, "pair": i // 2, "side": i % 2, "source": i, "kind": "pulse", "file": f"{i}.png",
             "success": True}
        if lm != "absent":
            r["landmarks"] = lm
        recs.append(r)
    (folder / "manifest.rank0.json").write_text(json.dumps(recs))
    x, x2, gx, gx2 = load_siam(tmp_path, 1, 32, "cpu")
    stored = [torch.from_numpy(np.array(Image.open(folder / f"{i}.png"))).permute(2, 0, 1).float() / 255
              for i in range(4)]
    fixed = FixedAlign(32)
    assert torch.allclose(gx[0], align_to_arcface(stored[0], torch.tensor(moved)))
    assert not torch.allclose(gx[0], fixed(stored[0][None])[0], atol=1e-2)
    assert torch.allclose(gx2[0], fixed(stored[1][None])[0])  # None: no face found
    assert torch.allclose(gx[1], align_to_arcface(stored[2], torch.tensor(moved)))
    assert torch.allclose(gx2[1], fixed(stored[3][None])[0])  # an older manifest
