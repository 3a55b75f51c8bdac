"""The bundled models: present, small, loadable with weights_only; the generator makes varied faces, DIC beats
bicubic."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from idpulse.generator import load_generator
from idpulse.upscale import GeneratorConfig, build_generator

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "checkpoints" / "generator.pt"


def test_bundled_generator_loads_safely_and_is_small():
    assert CKPT.is_file(), "checkpoints/generator.pt is part of the repository"
    assert CKPT.stat().st_size <= 20 * 2**20
    raw = torch.load(CKPT, weights_only=True)  # plain data only
    assert raw["format"] == "idpulse.generator/v1" and raw["meta"]["kimg"] > 0
    G = load_generator(CKPT)
    assert G.resolution == 64 and G.num_ws == 10 and G.has_gaussian_fit
    assert build_generator(GeneratorConfig(), torch.device("cpu")).resolution == 64  # the default


def test_bundled_generator_makes_varied_images():
    G = load_generator(CKPT)
    with torch.no_grad():
        x = (G(torch.randn(16, 512, generator=torch.Generator().manual_seed(0))) + 1) / 2  # (16, 3, 64, 64)
    assert torch.isfinite(x).all()
    per_image_mean = x.mean(dim=(1, 2, 3))
    assert per_image_mean.std() > 0.02  # not one image over and over (mode collapse)
    centre, border = x[:, :, 20:44, 20:44].mean(), torch.cat([x[:, :, :4].flatten(), x[:, :, -4:].flatten()]).mean()
    assert (centre - border).abs() > 0.01  # a face in the middle, not a flat field


def test_readme_main_command_runs(tmp_path):
    """`make upscale` minus the install: the example photo, aligned, upscaled with the defaults."""
    photo = tmp_path / "astronaut.png"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "example_input.py"), str(photo)], check=True)
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "upscale.py"), str(photo), "--out", str(tmp_path / "o"),
                        "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "astronaut" / "grid.png").is_file()
    rec = json.loads((tmp_path / "o" / "astronaut" / "result.json").read_text())
    assert len(rec["results"]) == 4  # the default seeds
    status = "matched" if rec["success"] else "NOT matched"
    assert f"{status} within eps 0.002: {photo} -> {tmp_path / 'o' / 'astronaut'}" in r.stderr


def test_bundled_extractors_and_judges_load_safely_and_are_small():
    from idpulse.evaluation.judges import load_judge
    from idpulse.extractor import load_extractor

    for name, heads in (("extractor_f_arc.pt", False), ("extractor_f.pt", True),
                        ("extractor_f_arc_iresnet18.pt", False), ("extractor_f_iresnet18.pt", True)):
        path = ROOT / "checkpoints" / name
        assert path.is_file() and path.stat().st_size <= 25 * 2**20, name
        raw = torch.load(path, weights_only=True)
        assert raw["format"] == "idpulse.extractor/v1" and len(raw["meta"]["history"]) >= 1
        f = load_extractor(path)
        assert (f.race_head is not None) == heads and (f.attr_head is not None) == heads
        assert 0 < f.theta_thr < 180 and f.theta_thr == raw["meta"]["history"][-1]["theta_thr"]  # re-estimated
        with torch.no_grad():
            feats = f(torch.rand(2, 3, 112, 112))
        assert feats.shape == (2, 512) and torch.isfinite(feats).all()
    race, meta = load_judge(ROOT / "checkpoints" / "judges" / "race.pt")
    assert race.names == ["White", "Black", "Asian", "Indian", "Others"] and meta["metrics"]["accuracy"] > 0.5
    assert race.box != (0.0, 0.0, 1.0, 1.0)  # looks where a tight UTKFace crop lies in the generator's frame
    attr, meta = load_judge(ROOT / "checkpoints" / "judges" / "attr.pt")
    assert len(attr.names) == 40 and meta["metrics"]["per_attribute"]["Male"] > 0.8


def test_bundled_dic_loads_safely_and_upscales_the_example_photo(tmp_path):
    from idpulse.dic import load_dic

    path = ROOT / "checkpoints" / "dic.pt"
    assert path.is_file() and path.stat().st_size <= 10 * 2**20
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "idpulse.dic/v1" and raw["meta"]["iterations"] > 0
    model = load_dic(path)
    assert (model.cfg.lr_size, model.cfg.hr_size) == (8, 64)  # the tables' own setting
    photo = tmp_path / "astronaut.png"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "example_input.py"), str(photo)], check=True)
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "upscale.py"), str(photo), "--method", "dic", "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    from PIL import Image

    assert Image.open(tmp_path / "o" / "astronaut" / "dic.png").size == (64, 64)
    assert json.loads((tmp_path / "o" / "astronaut" / "result.json").read_text())["kind"] == "photo"


def test_bundled_dic_beats_bicubic_on_held_out_faces():
    from conftest import need_shared

    need_shared("data", "celeba", "images")
    from idpulse.data import CelebA
    from idpulse.dic import load_dic
    from idpulse.evaluation.dic_report import measure

    model = load_dic(ROOT / "checkpoints" / "dic.pt")
    ds = CelebA(None, split="test", size=64)  # identities DIC never trained on
    photos = torch.stack([ds[i]["image"] for i in range(0, 40 * 7, 7)])
    m = measure(model, photos, border=8)
    assert (m["DIC_psnr"] - m["bicubic_psnr"]).mean() > 0.5  # dB, averaged over 40 faces
    assert (m["DIC_ssim"] - m["bicubic_ssim"]).mean() > 0
