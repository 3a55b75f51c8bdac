"""Generator training: runs end to end, and a run killed with SIGKILL resumes exactly."""

import contextlib
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

from idpulse.generator.weights import load_generator

ROOT = Path(__file__).resolve().parents[1]


def _faces(folder: Path, n: int = 24) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def _args(data: Path, run: Path, steps: int) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "train_generator.py"), f"--data={data}", f"--run_dir={run}",
            "--device=cpu", "--generator.resolution=16", "--generator.fmap_base=32", "--generator.fmap_max=16",
            "--generator.mapping_layers=2", "--d_fmap_base=32", "--d_fmap_max=16", "--batch=4",
            f"--total_kimg={steps * 4 / 1000}", "--checkpoint_every=1", "--sample_every=5", "--log_every=1",
            "--r1_every=2", "--gaussian_fit_samples=1000", "--threads=1"]


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    data = _faces(tmp_path / "faces")
    steps = 40
    full = tmp_path / "full"
    r = subprocess.run(_args(data, full, steps), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (full / "generator.pt").is_file() and list((full / "samples").glob("*kimg.png"))
    assert Image.open(full / "samples" / "reals.png").size == (8 * 16, 8 * 16)  # the data as D sees it

    killed = tmp_path / "killed"
    for _ in range(3):  # the kill must land mid-run; retry in the unlikely case the run finished first
        proc = subprocess.Popen(_args(data, killed, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        while proc.poll() is None and not (killed / "state.pt").is_file():
            time.sleep(0.005)
        time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if not (killed / "generator.pt").is_file():
            break
        for f in killed.rglob("*"):
            if f.is_file():
                f.unlink()
    assert not (killed / "generator.pt").is_file(), "could not kill the run before it finished"
    step_at_kill = torch.load(killed / "state.pt", weights_only=True)["step"]
    assert 0 < step_at_kill < steps
    r = subprocess.run(_args(data, killed, steps), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stdout

    a, b = load_generator(full / "generator.pt"), load_generator(killed / "generator.pt")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    sa = torch.load(full / "state.pt", weights_only=True)
    sb = torch.load(killed / "state.pt", weights_only=True)
    for k in sa["D"]:
        assert torch.equal(sa["D"][k], sb["D"][k]), k
    assert sa["step"] == sb["step"] == steps


def test_torchrun_two_ranks_on_cpu(tmp_path):
    data = _faces(tmp_path / "faces")
    run = tmp_path / "ddp"
    args = _args(data, run, 6)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", *args[1:]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    st = torch.load(run / "state.pt", weights_only=True)
    assert len(st["rng"]) == 2 and not torch.equal(st["rng"][0]["torch"], st["rng"][1]["torch"])
    assert st["shown"] == 6 * 4 and st["step"] == 3  # total_kimg counts both ranks' images
    assert "world_size: 2" in (run / "run.yaml").read_text()
    load_generator(run / "generator.pt")


def test_resuming_with_changed_settings_is_one_line(tmp_path):
    data = _faces(tmp_path / "faces")
    run = tmp_path / "run"
    r = subprocess.run(_args(data, run, 2), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    before = (run / "state.pt").read_bytes()
    for changed, key in (("--batch=8", "batch"), ("--lr=0.01", "lr"), (f"--data={tmp_path}", "data")):
        r = subprocess.run([*_args(data, run, 2), changed], capture_output=True, text=True, timeout=600)
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert r.returncode == 2 and len(err) == 1 and f" {key}=" in err[0] and "Traceback" not in r.stderr, r.stderr
    assert (run / "state.pt").read_bytes() == before
    # more images to show is a longer run of the same training: allowed
    r = subprocess.run([*_args(data, run, 2), "--total_kimg=0.012"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "resuming" in r.stdout, r.stderr[-2000:]


def test_tight_crops_are_framed_with_their_missing_border_masked():
    """UTKFace-like tight crops warped into the generator's frame: the pixels the photo has no
    data for are masked, for reals (zero there) and for fakes alike (masks drawn from the same
    pool with the same weights), so neither side can show D an empty border."""
    from idpulse.align import crop_template, frame_coverage
    from idpulse.training.gan_data import TrainingImages, _batch, _fake_masks, fake_entries

    framed = frame_coverage(crop_template(96), (96, 96), 64)  # a crop already in the frame: all there
    assert framed[2:-2, 2:-2].all()
    tight = frame_coverage((crop_template(96) - 48) * 1.8 + 48, (96, 96), 64)  # the face fills the photo
    assert tight[32, 32] and not tight[0, 0] and not tight[:, 0].any() and 0.2 < tight.mean() < 0.5

    images = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    masks = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    masks[1, :, 2:6, 2:6] = True  # image 0 has no pixels at all, image 1 a window
    data = TrainingImages(images, masks, torch.tensor([0.0, 1.0], dtype=torch.float64), {"x": 2})
    x, m, idx = _batch(data, 5, True, torch.device("cpu"))
    assert torch.equal(idx, torch.ones(5, dtype=torch.long))  # image 0 has weight 0
    assert torch.equal(m, masks[1:].expand(5, -1, -1, -1)) and (x[~m.expand_as(x)] == 0).all()
    assert (x[m.expand_as(x)] == 1).all()
    fakes = fake_entries(data, torch.randn(3, 16))
    assert torch.equal(_fake_masks(data, fakes, torch.device("cpu")), masks[1:].expand(3, -1, -1, -1))


def test_each_fake_is_masked_as_the_data_its_z_stands_for():
    """Two entries, a full-frame one (no masks) and a framed one: a fake's entry follows its z's first
    coordinate, entries come up at their shares under z ~ N(0, I), and a fake of the framed entry
    takes a mask of that entry's images (drawn by their weights), one of the other no mask at all."""
    from idpulse.data.sampling import latent_entries
    from idpulse.training.gan_data import TrainingImages, _fake_masks, fake_entries

    shares = torch.tensor([0.7, 0.3], dtype=torch.float64)
    z = torch.randn(200_000, 4, generator=torch.Generator().manual_seed(0))
    entry = latent_entries(z, shares)
    assert abs(float((entry == 1).double().mean()) - 0.3) < 0.005  # 3.5 SD of a 200k-draw share
    assert torch.equal(entry, (z[:, 0] > torch.special.ndtri(torch.tensor(0.7))).long())  # by z[:, 0] alone
    three = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    seen = torch.bincount(latent_entries(z, three), minlength=3).double() / len(z)
    assert torch.allclose(seen, three, atol=0.005)

    masks = torch.ones(5, 1, 4, 4, dtype=torch.bool)  # images 0-1: entry "a", whole; 2-4: entry "b", framed
    masks[2, :, 0] = False
    masks[3, :, :, 0] = False
    masks[4] = False  # weight 0 below: never drawn
    weights = torch.tensor([0.35, 0.35, 0.15, 0.15, 0.0], dtype=torch.float64)
    data = TrainingImages(torch.zeros(5, 3, 4, 4, dtype=torch.uint8), masks, weights, {"a": 2, "b": 3})
    assert torch.equal(data.entry_of, torch.tensor([0, 0, 1, 1, 1]))
    assert torch.allclose(data.entry_shares, shares)
    z = torch.randn(400, 4, generator=torch.Generator().manual_seed(1))
    m = _fake_masks(data, fake_entries(data, z), torch.device("cpu"))
    of_b = latent_entries(z, shares) == 1
    assert m[~of_b].all()  # entry a's fakes: whole
    mb = m[of_b][:, 0]  # (n_b, 4, 4): entry b's fakes, each one of b's masks but never image 4's (weight 0)
    top_missing, left_missing = (~mb[:, 0]).all(dim=1), (~mb[:, :, 0]).all(dim=1)
    assert torch.equal(top_missing ^ left_missing, torch.ones(len(mb), dtype=torch.bool))  # image 2's or 3's
    assert mb.any(dim=(1, 2)).all() and 0.35 < float(top_missing.double().mean()) < 0.65  # half each


def test_entry_keying_tells_a_generator_that_keys_on_the_entry_from_one_that_ignores_it():
    """entry_keying: a generator whose faces follow z[:, 0] alone reads far above 1, one blind to
    z[:, 0] reads 0, one that treats every coordinate alike about 1; the centres sit mid-interval."""
    from idpulse.data.sampling import entry_centres, entry_keying, latent_entries

    shares = torch.tensor([0.65, 0.35], dtype=torch.float64)
    c = entry_centres(shares)
    assert torch.allclose(torch.special.ndtr(c), torch.tensor([0.325, 0.825], dtype=torch.float64))
    assert torch.equal(latent_entries(c[:, None].expand(-1, 4).float(), shares), torch.tensor([0, 1]))
    z = torch.randn(16, 12, generator=torch.Generator().manual_seed(0))
    lift = torch.randn(12, 3 * 4 * 4, generator=torch.Generator().manual_seed(1))

    def picture(w: torch.Tensor):  # a generator that reads z through per-coordinate weights w (12,)
        return lambda zz: torch.tanh((zz * w) @ lift).view(-1, 3, 4, 4)

    keyed = torch.full((12,), 0.05)
    keyed[0] = 1.0
    assert entry_keying(picture(keyed), shares, z)[0] > 5
    blind = torch.ones(12)
    blind[0] = 0.0
    assert entry_keying(picture(blind), shares, z) == [0.0]
    assert 0.5 < entry_keying(picture(torch.ones(12)), shares, z)[0] < 2
    three = entry_keying(picture(keyed), torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), z)
    assert len(three) == 2 and min(three) > 5  # one ratio per entry after the first


def test_draw_weights_follow_the_shares_and_balance_races():
    from idpulse.data.sampling import draw_weights
    from idpulse.errors import UserError

    sets = [type("D", (), {"__len__": lambda self: 3, "labels": {}})(),
            type("D", (), {"__len__": lambda self: 4, "labels": {"race": [0, 0, 0, 1]}})()]
    w = draw_weights(sets, [], False)  # in proportion to size: every image alike
    assert torch.allclose(w, torch.full((7,), 1 / 7, dtype=torch.float64))
    w = draw_weights(sets, [1.0, 1.0], True)  # half each; the second's two races a quarter each
    assert torch.allclose(w[:3].sum(), torch.tensor(0.5, dtype=torch.float64))
    assert torch.allclose(w[3:6].sum(), w[6]) and torch.allclose(w[6], torch.tensor(0.25, dtype=torch.float64))
    with pytest.raises(UserError, match="data_shares has 1 entries for 2"):
        draw_weights(sets, [1.0], False)


def test_compiled_training_keeps_the_checkpoint_format_and_resumes_an_eager_run(tmp_path):
    """compile=true: the lazy R1 steps (every 2nd here) run D eagerly, the state and generator.pt
    have the eager run's keys, and an eager run's state goes on compiled (a resumable change)."""
    data = _faces(tmp_path / "faces")
    run = tmp_path / "run"
    r = subprocess.run(_args(data, run, 2), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    eager = torch.load(run / "state.pt", weights_only=True)
    r = subprocess.run(_args(data, run, 6) + ["--compile=true"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming" in r.stdout
    compiled = torch.load(run / "state.pt", weights_only=True)
    assert compiled["step"] == 6 and compiled["G"].keys() == eager["G"].keys()
    assert compiled["D"].keys() == eager["D"].keys()
    assert all(torch.isfinite(v).all() for v in compiled["G"].values())
    load_generator(run / "generator.pt")


def test_training_on_celeba_and_framed_utkface_runs_with_masked_fakes(tmp_path):
    """End to end on the toy layouts, UTKFace given tight-crop landmarks: its images are framed with
    masks, CelebA's are whole, and a short run trains and exports a generator."""
    from idpulse.align import crop_template
    from idpulse.config import load_config
    from idpulse.data.landmarks import HEADER
    from idpulse.data.synthetic import celeba_utkface
    from idpulse.training.gan import GanTrainConfig
    from idpulse.training.gan_data import load_training_images

    root = celeba_utkface(tmp_path / "data", utk_images=10)
    tight = ((crop_template(96) - 48) * 1.8 + 48).flatten()  # the face fills the photo, as UTKFace's crops
    rows = [",".join(HEADER[:12])] + [f"{p.name},100.0," + ",".join(f"{v:.2f}" for v in tight)
                                                 for p in sorted((root / "utkface" / "images").iterdir())]
    (root / "utkface" / "landmarks.csv").write_text("\n".join(rows) + "\n")
    over = ["--data=celeba,utkface", f"--data_root={root}", "--data_shares=[0.5,0.5]", "--balance_races=true",
            "--d_projection=true"]
    cfg = load_config(GanTrainConfig, None, [*over, "--generator.resolution=16"])
    data = load_training_images(cfg)
    n_c = data.counts["celeba"]
    assert data.masks[:n_c].all() and not data.masks[n_c:].all(dim=(1, 2, 3)).any()
    assert torch.allclose(data.entry_shares, torch.tensor([0.5, 0.5], dtype=torch.float64))

    run = tmp_path / "run"
    args = [a for a in _args(tmp_path, run, 3) if not a.startswith("--data=")] + over
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert load_generator(run / "generator.pt").resolution == 16


def test_reals_grid_shows_drawn_images_masked_and_leaves_the_training_rng_alone():
    from idpulse.training.gan_data import TrainingImages, reals_grid

    images = torch.stack([torch.full((3, 4, 4), 40 * i, dtype=torch.uint8) for i in range(3)])
    masks = torch.ones(3, 1, 4, 4, dtype=torch.bool)
    masks[2, :, :2] = False
    data = TrainingImages(images, masks, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), {"a": 3})
    torch.manual_seed(5)
    before = torch.get_rng_state()
    x = reals_grid(data, n=6)
    assert torch.equal(torch.get_rng_state(), before)
    assert x.shape == (6, 3, 4, 4) and torch.equal(x, reals_grid(data, n=6))
    assert (x[:, :, :2] == 0).all() and torch.allclose(x[:, :, 2:], torch.tensor(80 / 127.5 - 1))


def test_d_logits_are_logged_per_dataset():
    """With several datasets, D's mean logit per dataset for reals (by image) and fakes (by the entry
    their z stands for): whether each dataset's fakes pass as well as its reals."""
    from idpulse.training.gan_data import TrainingImages, entry_logits, fake_entries

    data = TrainingImages(torch.zeros(5, 3, 4, 4, dtype=torch.uint8), None,
                          torch.full((5,), 0.2, dtype=torch.float64), {"a": 2, "b": 3})
    z = torch.zeros(4, 8)
    z[:2, 0], z[2:, 0] = -1.0, 1.0  # shares 0.4 / 0.6: the cut is at ndtri(0.4) = -0.25
    r = entry_logits(data, torch.tensor([1.0, 3.0, 10.0]), torch.tensor([0, 1, 4]),
                     torch.tensor([-1.0, -3.0, 5.0, 7.0]), fake_entries(data, z))
    assert r == {"real_a": 2.0, "real_b": 10.0, "fake_a": -2.0, "fake_b": 6.0}
    one = TrainingImages(data.images, None, data.weights, {"a": 5})
    entry_f = torch.zeros(4, dtype=torch.long)
    assert entry_logits(one, torch.zeros(3), torch.tensor([0, 1, 2]), torch.zeros(4), entry_f) == {}


def test_projection_discriminator_starts_unconditional_and_adds_one_term_per_entry():
    """entries=1 keeps a plain D's keys; with entries=2 the projection starts at zero (the same
    logits as the plain D for either entry) and, once learnt, moves each logit by <e_y, h>/sqrt(C)."""
    from idpulse.training.discriminator import Discriminator

    torch.manual_seed(0)
    plain = Discriminator(resolution=16, fmap_base=32, fmap_max=16)
    proj = Discriminator(resolution=16, fmap_base=32, fmap_max=16, entries=2)
    assert set(proj.state_dict()) - set(plain.state_dict()) == {"entry_embed"}
    proj.load_state_dict({**plain.state_dict(), "entry_embed": torch.zeros(2, 16)})
    x = torch.randn(4, 3, 16, 16)
    zero, one = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    assert torch.equal(proj(x, zero), plain(x)) and torch.equal(proj(x, one), plain(x))
    with torch.no_grad():
        proj.entry_embed[1] = torch.randn(16)
    assert torch.equal(proj(x, zero), plain(x)) and not torch.allclose(proj(x, one), plain(x))
    h = {}
    proj.fc.register_forward_hook(lambda m, i, o: h.update(out=torch.nn.functional.leaky_relu(o, 0.2)))
    moved = proj(x, one) - plain(x)
    assert torch.allclose(moved, (h["out"] * proj.entry_embed[1]).sum(1) / 4, atol=1e-5)
    with pytest.raises(ValueError, match="entry"):
        proj(x)


def test_projection_d_sees_reals_by_their_dataset_and_fakes_by_their_z():
    """d_step and g_step hand D each real's dataset and each fake's latent entry: entry 1's images are
    white and its masks keep only the left half, so a recorded image shows which entry it stands for."""
    from idpulse.generator.stylegan import Generator
    from idpulse.training.gan import GanTrainConfig, _mixed_ws, d_step, g_step
    from idpulse.training.gan_data import TrainingImages

    torch.manual_seed(0)
    images = torch.cat([torch.zeros(6, 3, 8, 8, dtype=torch.uint8), torch.full((6, 3, 8, 8), 255, dtype=torch.uint8)])
    masks = torch.ones(12, 1, 8, 8, dtype=torch.bool)
    masks[6:, :, :, 4:] = False
    data = TrainingImages(images, masks, torch.full((12,), 1 / 12, dtype=torch.float64), {"a": 6, "b": 6})
    G = Generator(resolution=8, fmap_base=16, fmap_max=8, mapping_layers=1)
    cfg = GanTrainConfig(batch=16, d_projection=True, r1_gamma=0.0, xflip=False)
    D, seen = torch.nn.Linear(1, 1), []

    def D_logits(x, entry=None, eager=False):  # records what D is shown; a loss with D's and G's gradients
        seen.append((x.detach(), entry))
        return x.flatten(1).mean(1) + D.weight.sum()

    opt = torch.optim.SGD([*G.parameters(), *D.parameters()], lr=0.0)
    cpu, no_autocast = torch.device("cpu"), contextlib.nullcontext()
    d_step(G, D, opt, D_logits, data, cfg, 1, cpu, no_autocast)
    g_step(G, D, opt, D_logits, data, cfg, cpu, no_autocast)
    (real, e_real), (fake, e_fake), (fake_g, e_fake_g) = seen
    assert torch.equal(e_real, (real[:, 0, 0, 0] > 0).long())  # white reals are entry 1's
    for x, e in ((fake, e_fake), (fake_g, e_fake_g)):
        right_half_empty = (x[:, :, :, 4:] == 0).flatten(1).all(1)
        assert torch.equal(e, right_half_empty.long()) and 0 < e.sum() < len(e)

    # style mixing keeps the entry: the second z shares the first's z[:, 0]
    calls = []
    G.mapping.register_forward_hook(lambda m, i, o: calls.append(i[0].clone()))
    z = torch.randn(16, G.w_dim)
    _mixed_ws(G, z, 1.0, keep_entry=True)
    assert torch.equal(calls[1][:, 0], z[:, 0]) and not torch.equal(calls[1][:, 1:], z[:, 1:])


def test_projection_d_needs_several_datasets():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_generator.py"), "--data=celeba",
                        "--d_projection=true", "--run_dir=/nonexistent/run"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "d_projection needs several entries in data" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_mapping_lr_scales_only_the_mapping_networks_steps():
    """mapping_lr multiplies lr for G's mapping network alone: Adam's first step moves each weight by
    about lr, so with mapping_lr=10 the mapping moves 10x as far and the synthesis as far as before."""
    from idpulse.training.gan import GanModelConfig, GanTrainConfig, build_state

    def first_step(mapping_lr: float) -> tuple[float, float]:
        torch.manual_seed(0)
        cfg = GanTrainConfig(mapping_lr=mapping_lr, d_fmap_base=32, d_fmap_max=16,
                             generator=GanModelConfig(resolution=8, fmap_base=16, fmap_max=8, mapping_layers=2))
        st = build_state(cfg, torch.device("cpu"), fresh=True)
        before = [p.detach().clone() for p in st.G.parameters()]
        st.G(torch.randn(4, st.G.w_dim)).square().mean().backward()
        st.opt_G.step()
        moved = [(p - b).abs().max().item() for p, b in zip(st.G.parameters(), before)]
        n_map = len(list(st.G.mapping.parameters()))
        return max(moved[:n_map]), max(moved[n_map:])

    (map1, syn1), (map10, syn10) = first_step(1.0), first_step(10.0)
    assert map1 == pytest.approx(0.002, rel=0.01) and map10 == pytest.approx(0.02, rel=0.01)
    assert syn10 == syn1 == pytest.approx(0.002, rel=0.01)


def test_entry_gain_scales_z0s_first_layer_weights_on_a_fresh_multi_dataset_run():
    """entry_gain multiplies the mapping's first-layer weights of z[:, 0] (the coordinate that picks a
    fake's entry) on a fresh run with several datasets, and nothing else; one dataset: no entry, no gain."""
    from idpulse.training.gan import GanModelConfig, GanTrainConfig, build_state

    def dense0(data: str, gain: float, fresh: bool = True) -> torch.Tensor:
        torch.manual_seed(0)
        cfg = GanTrainConfig(data=data, entry_gain=gain, d_fmap_base=32, d_fmap_max=16,
                             generator=GanModelConfig(resolution=8, fmap_base=16, fmap_max=8, mapping_layers=2))
        st = build_state(cfg, torch.device("cpu"), fresh=fresh)
        assert torch.equal(st.G_ema.mapping.dense0.weight, st.G.mapping.dense0.weight)
        return st.G.mapping.dense0.weight.detach()

    plain, gained = dense0("celeba,utkface", 1.0), dense0("celeba,utkface", 4.0)
    assert torch.equal(gained[:, 0], 4.0 * plain[:, 0]) and torch.equal(gained[:, 1:], plain[:, 1:])
    assert torch.equal(dense0("celeba", 4.0), plain)  # no entries to key on
    assert torch.equal(dense0("celeba,utkface", 4.0, fresh=False), plain)  # a resumed run loads its own


def test_tensorboard_shows_each_r1_penalty(tmp_path):
    """loss/r1 is written at every R1 step (0, 2, 4, 6 here), whatever log_every: with both even, no
    logged step was an R1 step, and loss/r1 used to read 0 throughout."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    args = [a for a in _args(_faces(tmp_path / "faces"), run, 8) if not a.startswith(("--log_every", "--r1_every"))]
    r = subprocess.run([*args, "--log_every=2", "--r1_every=2", "--r1_gamma=1"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    r1 = events.Scalars("loss/r1")
    assert [e.step for e in r1] == [4, 12, 20, 28] and all(e.value > 0 for e in r1)  # images shown after each
    assert len(events.Scalars("loss/D")) == 4  # the other losses still every log_every steps


def test_a_state_from_before_mapping_lr_resumes_with_its_adam_moments():
    """G's Adam saved as one group (before mapping_lr) loads into build_state's two (mapping,
    synthesis) with every parameter's moments and step where they were."""
    from idpulse.training.gan import GanModelConfig, GanTrainConfig, _two_groups, build_state

    cfg = GanTrainConfig(d_fmap_base=32, d_fmap_max=16,
                         generator=GanModelConfig(resolution=8, fmap_base=16, fmap_max=8, mapping_layers=2))
    st = build_state(cfg, torch.device("cpu"), fresh=True)
    old = torch.optim.Adam(st.G.parameters(), lr=cfg.lr, betas=(0.0, cfg.beta2), eps=1e-8)  # as saved before
    st.G(torch.randn(2, st.G.w_dim)).square().mean().backward()
    old.step()
    st.opt_G.load_state_dict(_two_groups(old.state_dict(), st.G))
    for p in st.G.parameters():
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(st.opt_G.state[p][k], old.state[p][k])
    assert [g["lr"] for g in st.opt_G.param_groups] == [cfg.lr, cfg.lr]
    assert _two_groups(st.opt_G.state_dict(), st.G) == st.opt_G.state_dict()  # two groups: as they are
