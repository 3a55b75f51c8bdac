"""The upscale command as a user meets it: bad inputs give one line and a non-zero exit."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--generator.random_init=true", "--generator.resolution=16", "--generator.fmap_base=64",
        "--generator.fmap_max=32", "--generator.fit_samples=2000", "--input.thumbnail_size=4",
        "--steps", "3", "--seeds", "2", "--quiet"]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "upscale.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def thumb(path, size=(4, 4), mode="RGB"):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8)
    Image.fromarray(a.squeeze(-1) if mode == "L" else a, mode).save(path)
    return path


def one_line_error(r):
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error:")]
    assert lines, r.stderr
    assert "Traceback" not in r.stderr
    return lines


def test_help_explains_every_flag():
    r = run("--help")
    assert r.returncode == 0
    for flag in ("--seeds", "--steps", "--eps", "--out", "--config", "--device"):
        assert flag in r.stdout


def test_thumbnail_end_to_end(tmp_path):
    out = tmp_path / "out"
    r = run(thumb(tmp_path / "a.png"), "--out", out, *FAST, "--pulse.save_every=1", "--pulse.retries=0")
    assert r.returncode == 0, r.stderr
    assert Image.open(out / "a" / "frames.png").width > 3 * 16  # 3 steps side by side
    rec = json.loads((out / "a" / "result.json").read_text())
    assert [x["seed"] for x in rec["results"]] == [0, 1]
    assert all(x["ds_loss"] >= 0 and isinstance(x["success"], bool) for x in rec["results"])
    for f in ("seed0.png", "seed1.png", "grid.png", "thumbnail.png"):
        assert (out / "a" / f).is_file()
    assert Image.open(out / "a" / "seed0.png").size == (16, 16)
    assert "steps: 3" in (out / "config.yaml").read_text()
    assert "git_commit" in (out / "run.yaml").read_text()


def test_rgba_grayscale_and_odd_sizes_are_converted_with_warnings(tmp_path):
    out = tmp_path / "out"
    files = [thumb(tmp_path / "rgba.png", mode="RGBA"), thumb(tmp_path / "gray.png", mode="L"),
             thumb(tmp_path / "wide.png", size=(6, 4)), thumb(tmp_path / "big.png", size=(12, 12))]
    r = run(*files, "--out", out, *FAST)
    assert r.returncode == 0, r.stderr
    assert "RGBA image: transparency composited over white" in r.stderr
    assert f"-> {out / 'rgba'}" in r.stderr
    assert "L image converted to RGB" in r.stderr
    assert "centre-cropped" in r.stderr and "resized" in r.stderr
    for f in files:
        assert Image.open(out / f.stem / "thumbnail.png").size == (4, 4)


@pytest.mark.parametrize("content,expect", [(b"hello, not an image\n", "not an image"),
                                            (None, "corrupt")])
def test_bad_files(tmp_path, content, expect):
    bad = tmp_path / "bad.png"
    if content is None:  # a real PNG cut short
        thumb(tmp_path / "ok.png", size=(40, 40))
        bad.write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    else:
        bad.write_bytes(content)
    r = run(bad, "--out", tmp_path / "out", *FAST)
    assert r.returncode != 0
    assert expect in one_line_error(r)[0]


def test_text_file_and_tiny_image(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("not an image")
    r = run(txt, "--out", tmp_path / "o1", *FAST)
    assert r.returncode != 0 and "not an image" in one_line_error(r)[0]
    r = run(thumb(tmp_path / "dot.png", size=(1, 1)), "--out", tmp_path / "o2", *FAST)
    assert r.returncode != 0 and "too small" in one_line_error(r)[0]


def test_folder_with_one_bad_file_keeps_the_good_ones(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    thumb(d / "good1.png")
    thumb(d / "good2.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (d / "readme.txt").write_text("skip me")
    out = tmp_path / "out"
    r = run(d, "--out", out, *FAST)
    assert r.returncode == 1
    assert "broken.jpg" in one_line_error(r)[0]
    assert (out / "good1" / "result.json").is_file() and (out / "good2" / "result.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_inputs"] == [str(d / "broken.jpg")] and len(summary["images"]) == 2


def test_photo_without_face(tmp_path):
    flat = tmp_path / "wall.png"
    Image.new("RGB", (120, 120), (128, 128, 128)).save(flat)
    r = run(flat, "--out", tmp_path / "out", *FAST)
    assert r.returncode != 0 and "no face found" in one_line_error(r)[0]


def test_config_and_checkpoint_errors(tmp_path):
    t = thumb(tmp_path / "a.png")
    r = run(t, "--pulse.stepz=3", *FAST)
    assert r.returncode == 2 and "pulse.stepz" in one_line_error(r)[0]
    r = run(t, "--pulse.steps=abc", *FAST)  # a bad value is an error even where --steps replaces it
    assert r.returncode == 2 and "pulse.steps" in one_line_error(r)[0]
    r = run(t, "--steps", "3", "--generator.checkpoint=" + str(tmp_path / "none.pt"), "--out", tmp_path / "o")
    assert r.returncode == 2 and "no generator checkpoint" in one_line_error(r)[0]
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    r = run(t, "--steps", "3", f"--generator.checkpoint={junk}", "--out", tmp_path / "o")
    assert r.returncode == 2 and "cannot read" in one_line_error(r)[0]
    r = run(t, *FAST, "--pulse.loss=L3", "--out", tmp_path / "o")
    assert r.returncode == 2 and "pulse.loss" in one_line_error(r)[0] and "L1" in one_line_error(r)[0]
    r = run(t, *FAST, "--steps", "0", "--out", tmp_path / "o")
    assert r.returncode == 2 and "pulse.steps" in one_line_error(r)[0]
    r = run(t, *FAST, "--input.thumbnail_size=3", "--out", tmp_path / "o")
    assert r.returncode == 2 and "does not divide" in one_line_error(r)[0]
    r = run(tmp_path / "missing.png", *FAST)
    assert r.returncode == 2 and "no such file" in one_line_error(r)[0]


@pytest.fixture(scope="module")
def extractor_file(tmp_path_factory):
    import torch

    from idpulse.data import CELEBA_ATTRIBUTES
    from idpulse.extractor import FaceExtractor, save_extractor

    torch.manual_seed(0)
    f = FaceExtractor(backbone="iresnet18", width=0.125, race_classes=["White", "Black", "Asian"],
                      attribute_names=CELEBA_ATTRIBUTES)
    path = tmp_path_factory.mktemp("ext") / "f.pt"
    save_extractor(f.eval(), path)
    return path


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def test_controls_end_to_end(tmp_path, extractor_file, astronaut):
    out = tmp_path / "out"
    r = run(thumb(tmp_path / "a.png"), "--out", out, *FAST, "--extractor", extractor_file, "--race", "Black",
            "--attr", "Smiling=1", "--target", astronaut, "--pulse.retries=0")
    assert r.returncode == 0, r.stderr
    # Eq. 8: PULSE's objective unchanged, the control terms added; said, and written down
    objective = "100*L_DS(L2) + 0.05*GEOCROSS + 5*L_sim + 5*L_race + 5*L_attr (Eq. 8)"
    assert f"objective: {objective}" in r.stderr
    assert "extractor: idpulse extractor iresnet18 (from its checkpoint), RGB input" in r.stderr
    rec = json.loads((out / "a" / "result.json").read_text())
    assert rec["objective"] == objective
    res = rec["results"][0]
    for key in ("sim_loss", "race_loss", "attr_loss", "race_probs", "attribute_probs", "target_angles_deg",
                "accepted", "ds_loss"):
        assert key in res, key
    assert set(res["attribute_probs"]) == {"Smiling"} and len(res["target_angles_deg"]) == 1
    assert abs(sum(res["race_probs"].values()) - 1) < 1e-4
    # input, bicubic, PULSE, three single controls and all together
    assert Image.open(out / "a" / "compare.png").width == 2 + 7 * (16 + 2)


def test_bad_control_requests(tmp_path, extractor_file):
    t = thumb(tmp_path / "a.png")
    r = run(t, *FAST, "--extractor", extractor_file, "--race", "Martian", "--out", tmp_path / "o1")
    assert r.returncode == 2 and "knows: White, Black, Asian" in one_line_error(r)[0]
    r = run(t, *FAST, "--extractor", extractor_file, "--attr", "Smiles=1", "--out", tmp_path / "o2")
    assert r.returncode == 2 and "unknown attribute 'Smiles'" in one_line_error(r)[0]
    wall = tmp_path / "wall.png"
    Image.new("RGB", (120, 120), (128, 128, 128)).save(wall)
    r = run(t, *FAST, "--extractor", extractor_file, "--target", wall, "--out", tmp_path / "o3")
    assert r.returncode == 2 and "target photo" in one_line_error(r)[0] and "no face" in r.stderr
    r = run(t, *FAST, "--race", "Black", "--extractor", tmp_path / "none.pt", "--out", tmp_path / "o4")
    assert r.returncode == 2 and "no extractor checkpoint" in one_line_error(r)[0]
    import torch

    from idpulse.extractor import get_backbone

    torch.save(get_backbone("mbf", width=0.125).state_dict(), tmp_path / "mbf.pth")  # a bare insightface file
    r = run(t, *FAST, "--race", "Black", "--extractor", tmp_path / "mbf.pth", "--control.backbone=ir_se50",
            "--out", tmp_path / "o5")
    err = one_line_error(r)[0]
    assert r.returncode == 2 and "does not fit backbone ir_se50" in err and "insightface mbf" in err


def test_impossible_eps_is_an_honest_rejection(tmp_path, extractor_file):
    out = tmp_path / "out"
    r = run(thumb(tmp_path / "a.png"), "--out", out, *FAST, "--extractor", extractor_file, "--attr", "Male=1",
            "--eps", "1e-9", "--pulse.retries=1", "--pulse.ds_weight=50")
    assert r.returncode == 0, r.stderr
    assert "objective: 50*L_DS(L2) + 0.05*GEOCROSS + 5*L_attr (Eq. 8)" in r.stderr  # the user's weight, as set
    assert "NOT accepted within eps 1e-09 and the control thresholds" in r.stderr and "Traceback" not in r.stderr
    rec = json.loads((out / "a" / "result.json").read_text())
    assert rec["success"] is False and not any(x["accepted"] for x in rec["results"])


def test_the_old_control_ds_weight_key_is_refused(tmp_path):
    r = run(thumb(tmp_path / "a.png"), *FAST, "--control.ds_weight=1000", "--out", tmp_path / "o")
    err = one_line_error(r)[0]
    assert r.returncode == 2 and "control.ds_weight" in err and "pulse.ds_weight" in err


def test_an_inputs_results_do_not_depend_on_its_batch(tmp_path):
    """Starts follow each input's name: alone, or third in a folder, a thumbnail gets the same faces."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    r = run(folder, *FAST, "--pulse.retries=0", "--batch_images=3", "--out", tmp_path / "all")
    assert r.returncode == 0, r.stderr
    r = run(folder / "c.png", *FAST, "--pulse.retries=0", "--out", tmp_path / "one")
    assert r.returncode == 0, r.stderr
    together = json.loads((tmp_path / "all" / "c" / "result.json").read_text())["results"]
    alone = json.loads((tmp_path / "one" / "c" / "result.json").read_text())["results"]
    assert [x["total"] for x in together] == pytest.approx([x["total"] for x in alone], rel=1e-4)
    others = json.loads((tmp_path / "all" / "a" / "result.json").read_text())["results"]
    assert others[0]["total"] != together[0]["total"]


def test_decompression_bomb_is_one_line(tmp_path):
    """A PNG header claiming 40000x40000 pixels: PIL refuses it; we say so in one line."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    r = run(bomb, *FAST, "--out", tmp_path / "o")
    assert r.returncode != 0 and "too large" in one_line_error(r)[0]


@pytest.mark.parametrize("key", ["--batch_images=0", "--input.thumbnail_size=0", "--pulse.retries=-1",
                                 "--pulse.num_seeds=0", "--pulse.eps=-1"])
def test_non_positive_sizes_are_config_errors(tmp_path, key):
    r = run(thumb(tmp_path / "a.png"), *FAST, key, "--out", tmp_path / "o")
    name = key[2:].split("=")[0]
    assert r.returncode == 2 and f"'{name}' must be at least" in one_line_error(r)[0]


def test_config_yaml_records_the_generator_that_ran(tmp_path):
    """A PULSE-format 16 px generator: config.yaml says 16 px, not the 64 px field defaults."""
    import torch
    import yaml

    from idpulse.generator.stylegan import Generator

    torch.manual_seed(0)
    G = Generator(resolution=16, fmap_base=64, fmap_max=32)
    torch.save(G.synthesis.state_dict(), tmp_path / "synthesis.pt")
    torch.save(G.mapping.state_dict(), tmp_path / "mapping.pt")
    r = run(thumb(tmp_path / "a.png"), f"--generator.synthesis={tmp_path / 'synthesis.pt'}",
            "--generator.fit_samples=2000", "--input.thumbnail_size=4", "--steps", "2", "--seeds", "1", "--quiet",
            "--pulse.retries=0", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    gen = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())["generator"]
    assert (gen["resolution"], gen["fmap_base"], gen["fmap_max"]) == (16, 64, 32)
    assert oct((tmp_path / "gaussian_fit.pt").stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # cached, normal mode


def _umask() -> int:
    import os

    old = os.umask(0)
    os.umask(old)
    return old
