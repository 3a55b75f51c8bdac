import pytest
import torch

from idpulse.errors import CheckpointError
from idpulse.generator.stylegan import Generator, SynthesisNetwork
from idpulse.generator.weights import (
    infer_synthesis_config,
    load_generator,
    load_pulse_generator,
    save_generator,
)


@pytest.mark.parametrize("res", [4, 8, 32, 128])
def test_any_power_of_two_resolution(res):
    s = SynthesisNetwork(resolution=res, fmap_base=64, fmap_max=16)
    ws = torch.randn(2, s.num_ws, 512)
    out = s(ws)
    assert out.shape == (2, 3, res, res) and s.num_ws == 2 * res.bit_length() - 4
    assert torch.isfinite(out).all()


def test_bad_resolution():
    for res in (2, 48, 2048):
        with pytest.raises(ValueError):
            SynthesisNetwork(resolution=res)


def test_fused_upsampling_equals_nearest_plus_conv_inside():
    """From 128 px up the transposed conv replaces nearest-2x + 3x3 conv. As in PULSE's port it
    is, away from the border, nearest-2x + conv with the kernel flipped (conv_transpose's
    convention); with the kernel unflipped it is a different operator."""
    from idpulse.generator.layers import EqualConv2d

    torch.manual_seed(0)
    conv = EqualConv2d(4, 5, 3, upsample=True, blur=False)
    x = torch.randn(1, 4, 64, 64)  # 64 -> 128: fused path
    fused = conv(x)
    up = torch.nn.functional.interpolate(x, scale_factor=2)
    w = conv.weight * conv.w_mul
    ref = torch.nn.functional.conv2d(up, w.flip(2, 3), conv.bias, padding=1)
    unflipped = torch.nn.functional.conv2d(up, w, conv.bias, padding=1)
    assert fused.shape == ref.shape == (1, 5, 128, 128)
    assert torch.allclose(fused[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=1e-4)
    assert not torch.allclose(fused[..., 2:-2, 2:-2], unflipped[..., 2:-2, 2:-2], atol=1e-2)


def test_noise_is_used_and_deterministic_when_given():
    torch.manual_seed(0)
    s = SynthesisNetwork(resolution=16, fmap_base=64, fmap_max=16)
    for p in s.parameters():
        if p.ndim == 1 and p.shape[0] == 16:
            torch.nn.init.normal_(p)  # non-zero noise strengths
    ws = torch.randn(1, s.num_ws, 512)
    noise = [torch.randn(sh) for sh in s.noise_shapes(1)]
    assert torch.equal(s(ws, noise), s(ws, noise))
    assert not torch.equal(s(ws), s(ws))


def test_gaussian_fit_matches_direct_statistics():
    torch.manual_seed(0)
    G = Generator(resolution=8, fmap_base=32, fmap_max=16)
    fit = G.fit_gaussian(5000, batch=1000, seed=3)
    z = torch.randn(5000, 512, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        v = torch.nn.functional.leaky_relu(G.mapping(z), 5.0)
    assert torch.allclose(fit["mean"], v.mean(0), atol=1e-4)
    assert torch.allclose(fit["std"], v.std(0), rtol=1e-3)


def test_own_format_round_trip(tmp_path, tiny_generator):
    path = tmp_path / "g.pt"
    save_generator(tiny_generator, path, meta={"kimg": 1})
    raw = torch.load(path, weights_only=True)
    assert raw["meta"] == {"kimg": 1}
    G2 = load_generator(path)
    ws = torch.randn(1, G2.num_ws, 512)
    noise = [torch.zeros(sh) for sh in G2.synthesis.noise_shapes(1)]
    with torch.no_grad():
        assert torch.equal(G2.synthesis(ws, noise), tiny_generator.synthesis(ws, noise))
    assert torch.equal(G2.w_std, tiny_generator.w_std)
    assert not any(p.requires_grad for p in G2.parameters())


def test_pulse_format_with_strict_key_accounting(tmp_path, tiny_generator):
    torch.save(tiny_generator.synthesis.state_dict(), tmp_path / "synthesis.pt")
    torch.save(tiny_generator.mapping.state_dict(), tmp_path / "mapping.pt")
    torch.save(tiny_generator.gaussian_fit(), tmp_path / "gaussian_fit.pt")
    G = load_pulse_generator(tmp_path / "synthesis.pt")
    assert G.config["resolution"] == 16 and torch.equal(G.w_mean, tiny_generator.w_mean)
    assert infer_synthesis_config(tiny_generator.synthesis.state_dict()) == dict(
        resolution=16, fmap_base=64, fmap_max=32)

    bad = dict(tiny_generator.synthesis.state_dict())
    bad.pop("torgb.bias")
    bad["extra.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: torgb\.bias.*unexpected keys: extra\.weight"):
        load_pulse_generator(tmp_path / "bad.pt", tmp_path / "mapping.pt", tmp_path / "gaussian_fit.pt")


def test_gaussian_fit_is_computed_and_cached(tmp_path, tiny_generator):
    torch.save(tiny_generator.synthesis.state_dict(), tmp_path / "synthesis.pt")
    torch.save(tiny_generator.mapping.state_dict(), tmp_path / "mapping.pt")
    G = load_pulse_generator(tmp_path / "synthesis.pt", fit_samples=2000)
    assert G.has_gaussian_fit and (tmp_path / "gaussian_fit.pt").is_file()
    # same network, same samples (seed 0) as the fixture's own fit
    assert torch.allclose(G.w_mean, tiny_generator.w_mean, atol=1e-5)
    assert torch.allclose(G.w_std, tiny_generator.w_std, atol=1e-5)


def test_unreadable_and_wrong_files(tmp_path, tiny_generator):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_generator(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "missing.pt")
    torch.save(tiny_generator.synthesis.state_dict(), tmp_path / "syn.pt")
    with pytest.raises(CheckpointError, match="not an idpulse generator"):
        load_generator(tmp_path / "syn.pt")


def test_loading_does_not_move_the_global_rng(tmp_path, tiny_generator):
    save_generator(tiny_generator, tmp_path / "g.pt")
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_generator(tmp_path / "g.pt")
    assert torch.equal(torch.rand(3), expected)


def test_atomic_save_is_a_normal_file_named_as_a_direct_save(tmp_path):
    """Normal permissions (a temp file's are 0600), the archive named after the file, no leftovers."""
    import os
    import zipfile

    from idpulse.checkpoint import atomic_save

    old = os.umask(0o022)
    try:
        atomic_save({"mean": torch.zeros(3)}, tmp_path / "gaussian_fit.pt")
    finally:
        os.umask(old)
    path = tmp_path / "gaussian_fit.pt"
    assert path.stat().st_mode & 0o777 == 0o644
    assert {n.split("/")[0] for n in zipfile.ZipFile(path).namelist()} == {"gaussian_fit"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gaussian_fit.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["mean"], torch.zeros(3))


def test_a_registered_architecture_round_trips_and_the_search_takes_it(tmp_path):
    """A new generator is one class plus its registration: the checkpoint records its `arch`, loading
    builds that class, and pulse_search needs only the SearchableGenerator interface."""
    from idpulse.generator import ARCHITECTURES, SearchableGenerator, register_architecture
    from idpulse.pulse import pulse_search

    @register_architecture("test-wide-noise")
    class WideNoise(Generator):  # stands in for another architecture (StyleGAN2, say)
        pass

    try:
        torch.manual_seed(0)
        G = WideNoise(resolution=8, fmap_base=32, fmap_max=16, mapping_layers=2)
        G.fit_gaussian(500)
        assert isinstance(G, SearchableGenerator) and not isinstance(torch.nn.Linear(2, 2), SearchableGenerator)
        save_generator(G, tmp_path / "g.pt")
        raw = torch.load(tmp_path / "g.pt", weights_only=True)
        assert raw["arch"] == "test-wide-noise"
        H = load_generator(tmp_path / "g.pt")
        assert type(H) is WideNoise
        res = pulse_search(H, torch.rand(1, 3, 4, 4), steps=2, num_seeds=1)
        assert res.images.shape == (1, 1, 3, 8, 8)
        raw["arch"] = "stylegan9"  # a file from a newer version: one line naming what is known
        torch.save(raw, tmp_path / "new.pt")
        with pytest.raises(CheckpointError, match="stylegan9.*known: .*stylegan1"):
            load_generator(tmp_path / "new.pt")
        del raw["arch"]  # a file saved before the key existed is StyleGAN v1
        torch.save(raw, tmp_path / "old.pt")
        assert type(load_generator(tmp_path / "old.pt")) is Generator
    finally:
        ARCHITECTURES.pop("test-wide-noise", None)
