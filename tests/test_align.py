"""Detected alignment inside a search: batched MTCNN on the images' device, on a downscaled copy,
refreshed every k calls; the batched similarity transform; the one place that picks an alignment."""

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import need_shared

from idpulse.align import (
    ARCFACE_112,
    DetectedAlign,
    FaceDetector,
    FixedAlign,
    build_align,
    crop_template,
    similarity_transform,
    similarity_transform_batch,
    warp_affine,
)
from idpulse.control import ControlConfig, Controls, controlled_search
from idpulse.errors import UserError


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(min_prob=0.5)  # MTCNN built once for the module (its weights ship in the package)


@pytest.fixture(scope="module")
def faces():
    """4 sharp CelebA crops (source faces > 150 px), 96 px bicubic-upscaled to 256 px: (4, 3, 256, 256)."""
    from PIL import Image

    from idpulse.imageio import pil_to_tensor

    root = need_shared("data", "celeba")
    with open(root / "landmarks.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["source"] != "celeba_align" and float(r["source_face_px"]) > 150]
    x = torch.stack([pil_to_tensor(Image.open(root / "images" / r["image"]).convert("RGB")) for r in rows[:4]])
    return F.interpolate(x, size=(256, 256), mode="bicubic", align_corners=False).clamp(0, 1)


class CountingDetector:
    """Stands in for MTCNN: every image's landmarks are the crop template (so the detected warp is
    FixedAlign's), and it counts its calls."""

    def __init__(self):
        self.calls = 0

    def landmarks_batch(self, img, detect_size=None):
        self.calls += 1
        lm = torch.as_tensor(crop_template(img.shape[-1])).expand(len(img), 5, 2).clone()
        return lm, torch.ones(len(img), dtype=torch.bool)


def test_batched_detection_matches_one_image_at_a_time(detector, faces):
    from idpulse.imageio import tensor_to_pil

    lm, found = detector.landmarks_batch(faces[:3])
    assert lm.shape == (3, 5, 2) and lm.dtype == torch.float64 and found.tolist() == [True] * 3
    for i, x in enumerate(faces[:3]):
        one = detector.landmarks(tensor_to_pil(x))
        assert np.abs(lm[i].numpy() - one).max() < 1.0  # same detector, same 8-bit pixels


def test_detection_on_a_downscaled_copy_agrees_with_full_size(detector, faces):
    full, _ = detector.landmarks_batch(faces)
    half, found = detector.landmarks_batch(faces, detect_size=128)
    assert found.all()
    err = (half - full).norm(dim=2)  # (4, 5) px in the 256 px frame (eyes ~60 px apart)
    assert err.mean() < 4 and err.max() < 8  # MTCNN's own jitter between scales, not a frame error
    # the points come back in the full frame: unscaled they would be off by ~half the image
    assert (half / 2 - full).norm(dim=2).mean() > 40


def test_batched_similarity_transform_equals_umeyama():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(6, 5, 2)) * 30 + 100
    dst = rng.normal(size=(6, 5, 2)) * 10 + 50
    dst[0] = src[0] @ np.array([[0.3, -0.8], [0.8, 0.3]]).T + [4.0, -7.0]  # an exact similarity
    dst[1] = src[1] * [1.0, -1.0]  # a reflection: the best proper similarity, not the mirror
    M = similarity_transform_batch(torch.as_tensor(src), torch.as_tensor(dst))
    assert M.dtype == torch.float64 and M.shape == (6, 2, 3)
    for i in range(6):
        assert np.allclose(M[i].numpy(), similarity_transform(src[i], dst[i]), atol=1e-10)
    shared = similarity_transform_batch(torch.as_tensor(src), torch.as_tensor(ARCFACE_112))  # one dst for all
    assert np.allclose(shared[3].numpy(), similarity_transform(src[3], ARCFACE_112), atol=1e-10)
    assert np.allclose(M[0].numpy(), [[0.3, -0.8, 4.0], [0.8, 0.3, -7.0]], atol=1e-10)


def test_detected_warp_is_differentiable_in_the_pixels():
    det = DetectedAlign(12, out_size=8, detector=CountingDetector(), detect_every=5)
    img = torch.rand(2, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                     requires_grad=True)
    det(img)  # detects once; gradcheck's calls reuse those landmarks (same batch)
    assert torch.autograd.gradcheck(det, (img,), eps=1e-6, atol=1e-6)
    # both solve the same template->template similarity in float64: equal to float64 rounding
    # (a float32 matrix in either would differ by ~1e-7 and fail this)
    assert torch.allclose(det(img), FixedAlign(12, 8).double()(img), rtol=0, atol=1e-12)


def test_detect_every_k_reuses_landmarks_until_k_calls_a_reset_or_another_batch():
    stub = CountingDetector()
    det = DetectedAlign(16, detector=stub, detect_every=3)
    x = torch.rand(2, 3, 16, 16)
    for _ in range(7):
        det(x)
    assert stub.calls == 3  # calls 1, 4 and 7
    det.reset()
    det(x)
    assert stub.calls == 4
    det(torch.rand(3, 3, 16, 16))  # another batch size: its own landmarks
    assert stub.calls == 5
    det(torch.rand(3, 3, 16, 16, dtype=torch.float64))  # another dtype
    assert stub.calls == 6
    every = DetectedAlign(16, detector=CountingDetector(), detect_every=1)
    for _ in range(3):
        every(x)
    assert every.detector.calls == 3


def test_each_search_of_controlled_search_detects_afresh(tiny_generator):
    """A retry searches other starts (and possibly other rows) in a batch of the same shape: its
    first step must not reuse the previous search's landmarks (Controls.terms() resets them)."""
    from idpulse.extractor import FaceExtractor

    torch.manual_seed(0)
    f = FaceExtractor(backbone="iresnet18", width=0.125, attribute_names=["Smiling", "Male"]).eval()
    stub = CountingDetector()
    align = DetectedAlign(16, detector=stub, detect_every=100)
    ctl = Controls(f, align, ControlConfig(attr_max=-1.0), attrs=["Male=1"])  # nothing passes: every retry runs
    _, ok, _ = controlled_search(tiny_generator, torch.rand(2, 3, 4, 4), ctl, retries=1, num_seeds=1, steps=2)
    assert not ok.any() and stub.calls == 2  # once per search (2 steps each, detect_every 100)
    ctl.describe(torch.rand(2, 3, 16, 16))  # result images: detected on, not the last step's landmarks
    assert stub.calls == 3


def test_a_faceless_image_falls_back_and_says_so(detector, faces):
    det = DetectedAlign(256, detector=detector, detect_size=128)
    x = torch.cat([faces[:1], torch.full((1, 3, 256, 256), 0.5)])
    out = det(x)
    assert det.found == [True, False]
    lm = det.last_landmarks
    assert lm.shape == (2, 5, 2) and torch.isfinite(lm[0]).all() and torch.isnan(lm[1]).all()
    assert torch.allclose(out[1:], FixedAlign(256)(x[1:]))
    # the face row is warped with its own landmarks onto the ArcFace template
    want = warp_affine(x[:1], torch.as_tensor(similarity_transform(lm[0].numpy(), ARCFACE_112),
                                              dtype=torch.float32)[None], 112)
    assert torch.allclose(out[:1], want, atol=1e-5)


def test_build_align_is_the_one_place_that_chooses():
    assert isinstance(build_align("auto", 64, pulse_files=False), FixedAlign)
    d = build_align("auto", 64, pulse_files=True, detect_every=10, detect_size=256)
    assert isinstance(d, DetectedAlign) and (d.detect_every, d.detect_size) == (10, 256)
    assert isinstance(build_align("detected", 64, pulse_files=False), DetectedAlign)
    assert isinstance(build_align("fixed", 64, pulse_files=True), FixedAlign)
    with pytest.raises(UserError, match="control.align"):
        build_align("magic", 64, pulse_files=True)
    with pytest.raises(UserError, match="detect_every"):
        DetectedAlign(64, detect_every=0)


def test_images_that_are_no_search_step_are_detected_afresh():
    """Targets and results to measure have the shape of a search's rows: warping them by that
    search's cached landmarks would align them by another face's points."""
    from idpulse.align import align_afresh

    stub = CountingDetector()
    det = DetectedAlign(16, detector=stub, detect_every=10)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    det(x)
    det(x)
    assert stub.calls == 1  # a search's steps reuse the landmarks
    align_afresh(det, y)
    assert stub.calls == 2  # other images of the same shape: detected on
    assert torch.equal(align_afresh(FixedAlign(16), y), FixedAlign(16)(y))


def test_auto_alignment_follows_the_frame_a_generator_records(tmp_path):
    """A generator's checkpoint says where its faces sit: ours default to the training crops'
    frame (fixed warp); one saved with another frame (e.g. an FFHQ-aligned StyleGAN2) is aligned by
    detected landmarks under `auto`, whatever file format it came in."""
    from idpulse.generator.stylegan import Generator
    from idpulse.generator.weights import load_generator, save_generator

    torch.manual_seed(0)
    G = Generator(resolution=16, fmap_base=32, fmap_max=16, mapping_layers=2)
    G.fit_gaussian(1000)
    save_generator(G, tmp_path / "crops.pt")
    G.face_frame = "ffhq"
    save_generator(G, tmp_path / "ffhq.pt")
    assert isinstance(build_align("auto", 16, generator=load_generator(tmp_path / "crops.pt")), FixedAlign)
    assert isinstance(build_align("auto", 16, generator=load_generator(tmp_path / "ffhq.pt")), DetectedAlign)
    assert isinstance(build_align("fixed", 16, generator=load_generator(tmp_path / "ffhq.pt")), FixedAlign)
