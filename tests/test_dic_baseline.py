"""DIC as a method beside PULSE: `upscale.py --method dic`, the DIC column of PULSE's grids, the DIC
rows and the fidelity table of the paper's tables, and the PSNR/SSIM they use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from idpulse.dic import DIC, DICConfig, save_dic
from idpulse.evaluation.fidelity import psnr_y, rgb_to_y, ssim_y

ROOT = Path(__file__).resolve().parents[1]


def tiny_dic(path: Path, lr_size: int = 4, seed: int = 0) -> DIC:
    """A random DIC for lr_size -> 8 * lr_size px, saved to `path`."""
    torch.manual_seed(seed)
    model = DIC(DICConfig(lr_size=lr_size, features=4, groups=2, steps=2, projection_scale=2, fusion_blocks=1,
                          hg_features=8, hg_levels=2)).eval()
    save_dic(model, path)
    return model


def upscale(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "upscale.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def thumbnail(path: Path, size: int = 4) -> Path:
    a = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


def one_error_line(r) -> str:
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# --- PSNR and SSIM on Y ---

def test_y_channel_is_bt601():
    rgb = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [1, 1, 1]]).view(5, 3, 1, 1)
    y = rgb_to_y(rgb).flatten()
    assert torch.allclose(y, torch.tensor([16 + 65.481, 16 + 128.553, 16 + 24.966, 16.0, 235.0], dtype=y.dtype))


def test_psnr_and_ssim_match_scikit_image_on_the_cropped_luma():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = torch.Generator().manual_seed(0)
    ref = torch.rand(3, 3, 48, 48, generator=g)
    x = (ref + 0.08 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    p, s = psnr_y(x, ref, border=6), ssim_y(x, ref, border=6)
    ya, yb = rgb_to_y(x)[:, 0, 6:-6, 6:-6].numpy(), rgb_to_y(ref)[:, 0, 6:-6, 6:-6].numpy()
    for i in range(3):
        assert p[i].item() == pytest.approx(peak_signal_noise_ratio(yb[i], ya[i], data_range=255), rel=1e-9)
        want = structural_similarity(yb[i], ya[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255)
        assert s[i].item() == pytest.approx(want, rel=1e-9)
    assert torch.all(ssim_y(ref, ref) > 1 - 1e-12)
    # the border is cropped before measuring: damage confined to it changes nothing
    y = ref.clone()
    y[..., :6, :] = 0
    assert torch.isinf(psnr_y(y, ref, border=6)).all()
    with pytest.raises(ValueError, match="border"):
        psnr_y(ref, ref, border=24)


# --- upscale.py --method dic ---

def test_method_dic_on_a_thumbnail_writes_one_face_and_a_grid(tmp_path):
    model = tiny_dic(tmp_path / "dic.pt")
    th = thumbnail(tmp_path / "a.png")
    r = upscale(th, "--method", "dic", f"--dic.checkpoint={tmp_path / 'dic.pt'}", "--input.thumbnail_size=4",
                "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "out" / "a"
    face = Image.open(folder / "dic.png")
    assert face.size == (32, 32)
    assert Image.open(folder / "grid.png").width == 2 + 3 * (32 + 2)  # input, bicubic, DIC
    rec = json.loads((folder / "result.json").read_text())
    assert rec["method"] == "dic" and rec["file"] == "dic.png" and not (folder / "seed0.png").exists()
    # the file is the model's output on the thumbnail, rounded to 8 bits
    x = torch.from_numpy(np.array(Image.open(th).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    want = (model.upscale(x)[0].permute(1, 2, 0) * 255).round().byte().numpy()
    got = np.asarray(face.convert("RGB"))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    # result.json's ds_loss is how far the face's bicubic downscale is from the thumbnail
    from idpulse.pulse import downscale

    ds = float((downscale(model.upscale(x), 4) - x).pow(2).mean())
    assert rec["ds_loss"] == pytest.approx(ds, rel=1e-4, abs=1e-7)
    assert rec["success"] == (rec["ds_loss"] <= rec["eps"])
    assert "method: dic" in (tmp_path / "out" / "config.yaml").read_text()


def test_method_dic_refuses_requests_sizes_and_other_files_in_one_line(tmp_path):
    tiny_dic(tmp_path / "dic.pt")
    th = thumbnail(tmp_path / "a.png")
    common = [th, "--method", "dic", "--out", tmp_path / "out"]
    r = upscale(*common, f"--dic.checkpoint={tmp_path / 'dic.pt'}", "--input.thumbnail_size=4", "--race", "Black")
    assert r.returncode == 2 and "takes no requests" in one_error_line(r)
    r = upscale(*common, f"--dic.checkpoint={tmp_path / 'dic.pt'}", "--input.thumbnail_size=8")
    assert r.returncode == 2 and "upscales 4 px thumbnails to 32 px" in one_error_line(r)
    r = upscale(*common, f"--dic.checkpoint={ROOT / 'checkpoints' / 'generator.pt'}")
    assert r.returncode == 2 and "not an idpulse DIC checkpoint" in one_error_line(r)
    r = upscale(*common, f"--dic.checkpoint={tmp_path / 'missing.pt'}")
    assert r.returncode == 2 and "not found" in one_error_line(r)
    r = upscale(*common, "--method=bicubic")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_pulse_grids_show_dic_beside_pulse_when_it_fits(tmp_path):
    tiny_dic(tmp_path / "dic.pt")
    th = thumbnail(tmp_path / "a.png")
    fast = ["--generator.random_init=true", "--generator.resolution=32", "--generator.fmap_base=64",
            "--generator.fmap_max=16", "--generator.fit_samples=500", "--input.thumbnail_size=4", "--steps", "2",
            "--seeds", "2", "--pulse.retries=0", "--quiet"]
    r = upscale(th, *fast, f"--dic.checkpoint={tmp_path / 'dic.pt'}", "--out", tmp_path / "with")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "with" / "a" / "grid.png").width == 2 + 5 * (32 + 2)  # input, bicubic, DIC, 2 seeds
    r = upscale(th, *fast, f"--dic.checkpoint={tmp_path / 'dic.pt'}", "--dic.compare=false", "--out",
                tmp_path / "without")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "without" / "a" / "grid.png").width == 2 + 4 * (32 + 2)
    # a DIC of other sizes is left out of the grid, with a note, and the search still runs
    tiny_dic(tmp_path / "dic8.pt", lr_size=8)
    r = upscale(th, *fast, f"--dic.checkpoint={tmp_path / 'dic8.pt'}", "--out", tmp_path / "other")
    assert r.returncode == 0, r.stderr
    assert "no DIC column" in r.stderr
    assert Image.open(tmp_path / "other" / "a" / "grid.png").width == 2 + 4 * (32 + 2)


# --- the tables' DIC rows and fidelity table ---

def test_made_results_accept_within_eps_of_the_thumbnail():
    from idpulse.evaluation.table_dic import MadeResults
    from idpulse.pulse import downscale

    g = torch.Generator().manual_seed(0)
    faces = torch.rand(5, 3, 16, 16, generator=g)

    def source(idx):
        return faces[list(idx)]

    def nearest(thumbs):
        return torch.nn.functional.interpolate(thumbs, size=16, mode="nearest")

    thumbs = downscale(faces, 4).clamp(0, 1)  # what PULSE's rows search for
    made = (nearest(thumbs) * 255).round() / 255  # the results, in 8 bits
    err = (downscale(made, 4) - thumbs).pow(2).mean(dim=(1, 2, 3))  # (5,)
    eps = float(err.sort().values[2])  # 3 of the 5 within eps
    res = MadeResults(nearest, source, 5, 4, eps, 2, torch.device("cpu"))
    assert len(res) == 5 and torch.equal(res.accepted, err <= eps) and int(res.accepted.sum()) == 3
    assert torch.allclose(res.load([3, 0]), made[[3, 0]])


def test_tables_gain_dic_rows_and_a_fidelity_table(tmp_path):
    from conftest import need_shared

    need_shared("data", "celeba", "images")
    from test_tables import _tiny_models

    from idpulse.config import ConfigError, load_config
    from idpulse.data import CelebA
    from idpulse.evaluation.tables import TablesConfig, eval_tables
    from idpulse.generator.stylegan import Generator
    from idpulse.generator.weights import save_generator
    from idpulse.pulse import downscale

    over = _tiny_models(tmp_path)
    torch.manual_seed(0)
    G = Generator(resolution=32, fmap_base=32, fmap_max=16, mapping_layers=2)
    G.fit_gaussian(500)
    save_generator(G, tmp_path / "g32.pt")
    dic = tiny_dic(tmp_path / "dic.pt")
    over += [f"--generator.checkpoint={tmp_path / 'g32.pt'}", f"--dic={tmp_path / 'dic.pt'}", "--pairs=2",
             "--race_faces=2", "--attr_faces=2", "--request_faces=1", "--pulse.steps=1"]
    r = eval_tables(load_config(TablesConfig, None, over))
    assert "DIC" in r["table2"] and "DIC" in r["table3"]
    assert set(r["fidelity"]["table3"]) == {"bicubic", "DIC", "PULSE", "L_sim (f_arc)", "L_sim (f)", "L_attr"}
    assert set(r["fidelity"]["table2"]) == {"bicubic", "DIC", "PULSE", "L_sim", "L_race", "L_sim+L_race"}
    assert all("DIC" in v for v in r["requests"].values())
    if "skipped" not in r["identity"]:
        assert 0 <= r["identity"]["DIC"]["closer_than_pulse"] <= 1
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Fidelity" in md and "| DIC |" in md and "(not in the paper)" in md
    # the fidelity of DIC and bicubic, recomputed by hand from the Table 3 faces' photos
    ds = CelebA(None, split="test", size=32)
    photos = torch.stack([ds[int(i.rsplit("-", 1)[1])]["image"] for i in r["items"]["table3"]])
    thumbs = downscale(photos, 4).clamp(0, 1)
    bic = torch.nn.functional.interpolate(thumbs, size=32, mode="bicubic", align_corners=False)
    for name, out in (("bicubic", bic), ("DIC", dic.upscale(thumbs))):
        out = (out.clamp(0, 1) * 255).round() / 255
        got = r["fidelity"]["table3"][name]
        assert got["psnr"]["mean"] == pytest.approx(float(psnr_y(out, photos, 8).mean()), rel=1e-6)
        assert got["ssim"]["mean"] == pytest.approx(float(ssim_y(out, photos, 8).mean()), rel=1e-6)
    # a DIC made for other sizes is refused before any search
    tiny_dic(tmp_path / "dic8.pt", lr_size=8)
    with pytest.raises(ConfigError, match="upscales 8 px thumbnails to 64 px"):
        eval_tables(load_config(TablesConfig, None, over + [f"--dic={tmp_path / 'dic8.pt'}",
                                                             f"--out={tmp_path / 'rep2'}"]))
    assert not (tmp_path / "rep2" / "cache").exists() or not any((tmp_path / "rep2" / "cache").glob("*__*"))


def test_dic_report_measures_dic_and_bicubic_on_held_out_faces(tmp_path):
    from conftest import need_shared

    need_shared("data", "celeba", "images")
    from idpulse.data import CelebA
    from idpulse.evaluation.dic_report import DICReportConfig, dic_report
    from idpulse.pulse import downscale

    dic = tiny_dic(tmp_path / "dic.pt")
    r = dic_report(DICReportConfig(out=str(tmp_path / "rep"), dic=str(tmp_path / "dic.pt"), sets=["celeba"], faces=5,
                                   batch=2, examples=2), progress=False)
    v = r["sets"]["celeba"]
    assert v["faces"] == 5 and r["border"] == 8 and r["hr_size"] == 32
    ds = CelebA(None, split="test", size=32)
    pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:5].tolist()
    photos = torch.stack([ds[i]["image"] for i in pick])
    out = (dic.upscale(downscale(photos, 4).clamp(0, 1)) * 255).round() / 255
    assert v["DIC_psnr"]["mean"] == pytest.approx(float(psnr_y(out, photos, 8).mean()), rel=1e-9)
    assert v["psnr_gain"]["mean"] == pytest.approx(v["DIC_psnr"]["mean"] - v["bicubic_psnr"]["mean"], abs=1e-9)
    assert Image.open(tmp_path / "rep" / "examples.png").width == 2 + 8 * (32 + 2)
    assert "| CelebA test partition | 5 |" in (tmp_path / "rep" / "report.md").read_text()
