import pytest
import torch

from idpulse.pulse import LossTerm, PulseInit, downscale, lr_lambda, pulse_search


def test_schedules():
    f = lr_lambda("linear1cycledrop", 100)
    assert f(0) == pytest.approx(0.1) and f(45) == pytest.approx(1.0) and f(89) < 0.2
    assert f(99) == pytest.approx(0.1 + 9 / 10 * (0.001 - 0.1))
    g = lr_lambda("linear1cycle", 100)
    assert g(50) == pytest.approx(1.0) and g(0) == pytest.approx(0.1)
    assert lr_lambda("fixed", 10)(7) == 1.0
    with pytest.raises(ValueError):
        lr_lambda("cosine", 10)


def test_downscale_of_constant_is_constant():
    x = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(downscale(x, 8), torch.full((1, 3, 8, 8), 0.3), atol=1e-6)


def test_batched_rows_do_not_interact(tiny_generator):
    """Image i with seed k follows the same trajectory alone as inside a batch."""
    torch.manual_seed(1)
    thumbs = torch.rand(2, 3, 4, 4)
    both = pulse_search(tiny_generator, thumbs, num_seeds=2, steps=8, seed=5)
    alone = pulse_search(tiny_generator, thumbs[1:], num_seeds=2, steps=8, seed=5)
    assert both.images.shape == (2, 2, 3, 16, 16)
    assert torch.allclose(both.total[1], alone.total[0], rtol=1e-4, atol=1e-6)
    assert torch.allclose(both.images[1], alone.images[0], atol=1e-4)
    assert not torch.allclose(both.images[0, 0], both.images[0, 1])  # seeds differ


def test_search_reduces_downscale_loss_and_judges_success_per_image(tiny_generator):
    G = tiny_generator
    with torch.no_grad():
        reachable = downscale((G(torch.randn(1, 512, generator=torch.Generator().manual_seed(0))) + 1) / 2, 4)
    thumbs = torch.cat([reachable.clamp(0, 1), torch.zeros(1, 3, 4, 4)])  # black: far harder
    thumbs[1, 0] = 1.0  # pure red
    r = pulse_search(G, thumbs, num_seeds=2, steps=60, eps=0.02)
    first = r.history[0]["DS_RAW"].view(2, 2)
    assert (r.ds_loss <= first + 1e-6).all()  # the kept step is never worse than the start
    assert r.success[0].any() and r.ds_loss[0].min() <= 0.02
    assert bool(r.image_success[0])
    assert torch.equal(r.success, r.ds_loss <= 0.02)
    k = r.best_seed()
    assert r.success[0, k[0]]


def test_generator_left_frozen_and_flags_restored(tiny_generator):
    G = tiny_generator.train().requires_grad_(True)
    pulse_search(G, torch.rand(1, 3, 4, 4), steps=2)
    assert G.training and all(p.requires_grad for p in G.parameters())
    assert all(p.grad is None for p in G.parameters())


def test_extra_loss_term_is_applied(tiny_generator):
    calls = []

    def brightness(img, ws):
        calls.append(img.shape)
        return img.mean(dim=(1, 2, 3))

    thumb = torch.full((1, 3, 4, 4), 0.5)
    plain = pulse_search(tiny_generator, thumb, steps=15, seed=3)
    dark = pulse_search(tiny_generator, thumb, steps=15, seed=3,
                        extra_losses=[LossTerm("bright", 50.0, brightness)])
    assert calls and calls[0] == (1, 3, 16, 16)
    assert "bright" in dark.extra and "bright" in dark.history[0]
    assert dark.images.mean() < plain.images.mean()


def test_init_frames_and_tiling(tiny_generator):
    G = tiny_generator
    v = torch.randn(1, 1, 512)
    r = pulse_search(G, torch.rand(1, 3, 4, 4), steps=5, tile_latent=True, init=PulseInit(v), save_every=2)
    assert [s for s, _ in r.frames] == [0, 2, 4]
    assert r.latents.shape == (1, 1, 1, 512) and r.ws.shape == (1, 1, G.num_ws, 512)
    assert torch.allclose(r.geocross, torch.zeros(1, 1))
    with pytest.raises(ValueError):
        pulse_search(G, torch.rand(1, 3, 5, 5), steps=1)  # 5 does not divide 16
