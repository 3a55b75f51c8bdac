import pytest
import torch

from idpulse.pulse import LossTerm, PulseInit, downscale, lr_lambda, pulse_search, start_seed


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


def test_an_extra_term_may_not_take_another_terms_name(tiny_generator):
    """The history keeps each step's losses by name: a clash would silently hide one of them."""
    term = LossTerm("x", 1.0, lambda img, ws: img.mean(dim=(1, 2, 3)))
    thumb = torch.rand(1, 3, 4, 4)
    for name in ("L2", "GEOCROSS", "TOTAL", "DS_RAW"):
        with pytest.raises(ValueError, match=f"extra loss name '{name}' is taken"):
            pulse_search(tiny_generator, thumb, steps=1, extra_losses=[LossTerm(name, 1.0, term.fn)])
    with pytest.raises(ValueError, match="extra loss name 'x' is taken"):
        pulse_search(tiny_generator, thumb, steps=1, extra_losses=[term, term])


def test_init_frames_and_tiling(tiny_generator):
    G = tiny_generator
    v = torch.randn(1, 1, 512)
    r = pulse_search(G, torch.rand(1, 3, 4, 4), steps=5, tile_latent=True, init=PulseInit(v), save_every=2)
    assert [s for s, _ in r.frames] == [0, 2, 4]
    assert r.latents.shape == (1, 1, 1, 512) and r.ws.shape == (1, 1, G.num_ws, 512)
    assert torch.allclose(r.geocross, torch.zeros(1, 1))
    with pytest.raises(ValueError):
        pulse_search(G, torch.rand(1, 3, 5, 5), steps=1)  # 5 does not divide 16


def test_two_faces_in_one_batch_start_from_different_points(tiny_generator):
    r = pulse_search(tiny_generator, torch.rand(2, 3, 4, 4), keys=["a", "b"], steps=1)
    start_a, start_b = r.history[0]["TOTAL"]  # the objective at step 0 is the starts' own
    assert not torch.equal(start_a, start_b)
    # and the same thumbnail twice under two keys: still two different starts, so two different results
    same = torch.rand(1, 3, 4, 4).expand(2, -1, -1, -1)
    r2 = pulse_search(tiny_generator, same, keys=["a", "b"], steps=3)
    assert not torch.allclose(r2.images[0], r2.images[1])


def test_a_face_starts_alike_at_any_batch_position_and_size(tiny_generator):
    """Its start follows its key: not its position, the batch size or the other faces."""
    G = tiny_generator
    torch.manual_seed(2)
    face = torch.rand(1, 3, 4, 4)
    others = torch.rand(5, 3, 4, 4)
    alone = pulse_search(G, face, keys=["face"], num_seeds=2, steps=3)
    first = pulse_search(G, torch.cat([face, others[:1]]), keys=["face", "o0"], num_seeds=2, steps=3)
    last = pulse_search(G, torch.cat([others, face]), keys=["o0", "o1", "o2", "o3", "o4", "face"], num_seeds=2, steps=3)
    for r, n in ((first, 0), (last, 5)):
        assert torch.allclose(r.history[0]["TOTAL"].view(-1, 2)[n], alone.history[0]["TOTAL"].view(-1, 2)[0])
        assert torch.allclose(r.images[n], alone.images[0], atol=1e-4)
    # without keys, a thumbnail is named by its pixels: the same start wherever it appears
    a = pulse_search(G, torch.cat([others[:2], face]), steps=1).history[0]["TOTAL"]
    b = pulse_search(G, face, steps=1).history[0]["TOTAL"]
    assert torch.allclose(a[2], b[0])


def test_start_numbers_and_run_seed_give_new_starts(tiny_generator):
    G, face = tiny_generator, torch.rand(1, 3, 4, 4)
    base = pulse_search(G, face, keys=["x"], num_seeds=2, steps=1)
    assert base.starts.tolist() == [[0, 1]] and base.keys == ["x"]
    later = pulse_search(G, face, keys=["x"], num_seeds=2, first_start=2, steps=1)
    other_seed = pulse_search(G, face, keys=["x"], num_seeds=2, seed=1, steps=1)
    assert later.starts.tolist() == [[2, 3]]
    t = base.history[0]["TOTAL"]
    assert not torch.allclose(t, later.history[0]["TOTAL"]) and not torch.allclose(t, other_seed.history[0]["TOTAL"])
    assert start_seed(0, "x", 0) != start_seed(0, "x", 1) != start_seed(1, "x", 0)
    assert start_seed(0, "x", 0) == 2377963238643351052  # a hash, not Python's salted hash(): the same on every machine


def test_bad_noise_layers_out_of_range_is_an_error(tiny_generator):
    G = tiny_generator  # 16 px: 6 noise layers, -6..5
    pulse_search(G, torch.rand(1, 3, 4, 4), steps=1, bad_noise_layers=[-6, 5])
    for bad in ([6], [-7], [17]):
        with pytest.raises(ValueError, match="outside -6..5"):
            pulse_search(G, torch.rand(1, 3, 4, 4), steps=1, bad_noise_layers=bad)


def test_float64_search_with_controls(tiny_generator):
    """float64 runs through generator, downsampler, losses, optimiser and a control, unchanged."""
    from idpulse.align import FixedAlign
    from idpulse.control import ControlConfig, Controls, controlled_search
    from idpulse.extractor import FaceExtractor

    G = tiny_generator.to(torch.float64)
    torch.manual_seed(0)
    f = FaceExtractor(backbone="iresnet18", width=0.125, race_classes=["White", "Black"]).eval().to(torch.float64)
    ctl = Controls(f, FixedAlign(G.resolution), ControlConfig(), race="Black", targets=torch.rand(1, 3, 112, 112))
    res, ok, _ = controlled_search(G, torch.rand(2, 3, 4, 4), ctl, steps=3, retries=1)
    assert res.images.dtype == res.ds_loss.dtype == res.extra["race"].dtype == torch.float64
    assert res.history[0]["race"].dtype == torch.float64 and ok.shape == (2, 1)
