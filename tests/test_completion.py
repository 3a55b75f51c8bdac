"""Completing framed tight crops from donor surrounds (idpulse/data/completion.py) and GAN training
on the completed frames (`complete_from`, `min_age`)."""

import pytest
import torch

from idpulse.data.completion import complete_with_donors, nearest_donors, paste_centre
from idpulse.errors import UserError


def _smooth(n: int, size: int, seed: int) -> torch.Tensor:
    """n smooth random uint8 images (n, 3, size, size): noise at 1/8 the size, upsampled."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g)
    return (torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False) * 255).round().byte()


def _centre_mask(n: int, size: int) -> torch.Tensor:
    m = torch.zeros(n, 1, size, size, dtype=torch.bool)
    m[:, :, size // 4: 3 * size // 4, 5 * size // 16: 11 * size // 16] = True  # a tight crop's centre
    return m


def test_a_crop_whose_own_surround_is_a_donor_is_completed_with_it_exactly():
    """Donors: noise, plus the crops' true whole frames (one of them mirrored). Each crop (its
    border replaced by junk) finds its own frame, and the composite is that frame: no shift, no
    seam."""
    truth = _smooth(3, 32, seed=0)
    masks = _centre_mask(3, 32)
    crops = torch.where(masks, truth, torch.zeros_like(truth))  # nothing beyond the centre
    noise = torch.randint(0, 256, (20, 3, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    donors = torch.cat([noise[:7], truth[0:1], noise[7:14], truth[1:2].flip(3), noise[14:], truth[2:3]])
    pool = torch.cat([donors, donors.flip(3)]).float() / 127.5 - 1
    best = nearest_donors(crops.float() / 127.5 - 1, masks, pool)
    assert best.tolist() == [7, len(donors) + 15, len(donors) - 1]  # the second found mirrored back
    out = complete_with_donors(crops, masks, donors)
    assert (out.int() - truth.int()).abs().max() <= 1


def test_the_centre_is_kept_the_far_surround_is_the_donors_and_the_seam_is_blended():
    """A grey crop centre on a red donor: deep inside the mask the crop's pixels, far outside the
    donor's, and no jump across the mask's edge as large as the raw paste's."""
    size = 64
    masks = _centre_mask(1, size)
    crop = torch.full((1, 3, size, size), 0.2)
    donor = torch.tensor([0.8, -0.6, -0.6]).view(1, 3, 1, 1).expand(1, 3, size, size).clone()
    out = paste_centre(crop, masks, donor)
    inner = torch.zeros_like(masks)
    inner[:, :, 16 + 6: 48 - 6, 20 + 6: 44 - 6] = True
    assert torch.allclose(out[inner.expand_as(out)], crop[inner.expand_as(out)], atol=1e-4)
    assert torch.allclose(out[..., :4, :4], donor[..., :4, :4], atol=1e-3)  # the corner, 16+ px away
    near = out[..., 16 - 3, 32]  # 3 px above the mask: the donor shifted to meet the crop
    assert ((near - crop[..., 0, 0]).abs() < 0.5 * (donor[..., 0, 0] - crop[..., 0, 0]).abs()).all()
    raw_jump = (crop - donor).abs().max()
    jumps = torch.cat([(out[..., 1:, :] - out[..., :-1, :]).abs().flatten(),
                       (out[..., 1:] - out[..., :-1]).abs().flatten()])
    assert jumps.max() < 0.35 * raw_jump


def test_whole_frames_come_back_unchanged_and_bad_donors_are_refused():
    imgs = _smooth(2, 32, seed=3)
    whole = torch.ones(2, 1, 32, 32, dtype=torch.bool)
    assert torch.equal(complete_with_donors(imgs, whole, _smooth(4, 32, seed=4)), imgs)
    with pytest.raises(UserError, match="donor images are"):
        complete_with_donors(imgs, _centre_mask(2, 32), _smooth(4, 16, seed=4))
    with pytest.raises(UserError, match="no donor images"):
        complete_with_donors(imgs, _centre_mask(2, 32), torch.zeros(0, 3, 32, 32, dtype=torch.uint8))


def _toy_with_tight_utkface(tmp_path):
    from idpulse.align import crop_template
    from idpulse.data.landmarks import HEADER
    from idpulse.data.synthetic import celeba_utkface

    root = celeba_utkface(tmp_path / "data", utk_images=10)  # UTKFace ages 20..29
    tight = ((crop_template(96) - 48) * 1.8 + 48).flatten()  # the face fills the photo, as UTKFace's crops
    rows = [",".join(HEADER[:12])] + [f"{p.name},100.0," + ",".join(f"{v:.2f}" for v in tight)
                                       for p in sorted((root / "utkface" / "images").iterdir())]
    (root / "utkface" / "landmarks.csv").write_text("\n".join(rows) + "\n")
    return root


def test_training_images_completed_from_celeba_have_no_masks_and_keep_utkface_centres(tmp_path):
    """complete_from=celeba: the framed UTKFace crops come back whole (no masks), their covered
    centre their own, their border a CelebA crop's; min_age drops the younger crops."""
    from idpulse.config import load_config
    from idpulse.training.gan import GanTrainConfig
    from idpulse.training.gan_data import load_training_images

    root = _toy_with_tight_utkface(tmp_path)
    base = ["--data=celeba,utkface", f"--data_root={root}", "--generator.resolution=32"]
    masked = load_training_images(load_config(GanTrainConfig, None, base))
    done = load_training_images(load_config(GanTrainConfig, None, [*base, "--complete_from=celeba"]))
    n_c = done.counts["celeba"]
    assert done.masks is None and done.images.shape == masked.images.shape
    assert torch.equal(done.images[:n_c], masked.images[:n_c])
    m = masked.masks[n_c:]
    inner = torch.nn.functional.max_pool2d((~m).float(), 7, stride=1, padding=3) == 0  # 3+ px inside the mask
    utk, before = done.images[n_c:], masked.images[n_c:]
    assert (utk.int() - before.int()).abs()[inner.expand_as(utk)].max() <= 1
    outside = (~m).expand_as(utk)
    assert not torch.equal(utk[outside], before[outside])  # the repeated border is gone
    donors = masked.images[:n_c]
    corner = utk[:, :, :3, :3]  # far from the centre: some donor's pixels (mirrored or not), unshifted
    for c in corner:
        diffs = torch.cat([(donors[:, :, :3, :3].int() - c.int()).abs().amax((1, 2, 3)),
                           (donors.flip(3)[:, :, :3, :3].int() - c.int()).abs().amax((1, 2, 3))])
        assert diffs.min() <= 2

    young = load_training_images(load_config(GanTrainConfig, None, [*base, "--complete_from=celeba", "--min_age=25"]))
    assert young.counts == {"celeba": n_c, "utkface": 5}


@pytest.mark.parametrize("over, match", [
    (["--complete_from=fairface"], "not an entry of data"),
    (["--complete_from=utkface"], "its own crops are framed"),
    (["--data=celeba", "--complete_from=celeba"], "no entry of data is framed"),
    (["--min_age=90"], "leaves no image of data entry 'utkface'"),
])
def test_completion_settings_that_cannot_work_are_one_line_errors(tmp_path, over, match):
    from idpulse.config import load_config
    from idpulse.training.gan import GanTrainConfig
    from idpulse.training.gan_data import load_training_images

    root = _toy_with_tight_utkface(tmp_path)
    args = ["--data=celeba,utkface", f"--data_root={root}", "--generator.resolution=16", *over]
    with pytest.raises(UserError, match=match):
        load_training_images(load_config(GanTrainConfig, None, args))
