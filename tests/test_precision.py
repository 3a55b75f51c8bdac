"""The bf16 switch (`idpulse/precision.py`): the network passes in bf16, everything else fp32."""

import warnings

import pytest
import torch

from idpulse.config import ConfigError, load_config
from idpulse.errors import SearchArgumentError, UserError
from idpulse.precision import autocast, check_precision, fp32_region
from idpulse.pulse import LossTerm, downscale, pulse_search
from idpulse.pulse.config import PulseConfig

pytestmark = pytest.mark.filterwarnings("ignore:precision bf16 on a:UserWarning")  # CPUs without AMX


def _dtype_hook(module, seen: list):
    return module.register_forward_hook(lambda m, i, o: seen.append(o.dtype))


def test_configs_and_search_reject_an_unknown_precision(tiny_generator):
    from idpulse.training.extractor_loop import ExtractorTrainConfig

    assert load_config(PulseConfig, None, ["--precision=bf16"]).search_kwargs()["precision"] == "bf16"
    assert PulseConfig().precision == ExtractorTrainConfig().precision == "fp32"
    with pytest.raises(ConfigError, match="'precision' must be one of"):
        load_config(PulseConfig, None, ["--precision=fp16"])
    with pytest.raises(ConfigError, match="'precision' must be one of"):
        load_config(ExtractorTrainConfig, None, ["--precision=bfloat16"])
    with pytest.raises(SearchArgumentError, match="unknown precision 'fp16'"):
        pulse_search(tiny_generator, torch.rand(1, 3, 4, 4), precision="fp16")
    with pytest.raises(UserError, match="precision must be one of"):
        check_precision("half")


def test_fp32_adds_no_autocast_and_fp32_region_undoes_bf16():
    with autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with fp32_region("cpu"):  # no autocast on: nothing changes
        assert not torch.is_autocast_enabled("cpu")
    a = torch.randn(4, 8)
    with autocast("cpu", "bf16"):
        assert (a @ a.T).dtype == torch.bfloat16
        with fp32_region("cpu"):
            assert (a @ a.T).dtype == torch.float32
        assert (a @ a.T).dtype == torch.bfloat16


def test_bf16_with_a_float64_generator_is_an_error(tiny_generator):
    """autocast leaves float64 alone, so bf16 there would silently be a float64 run: refused."""
    with pytest.raises(SearchArgumentError, match="precision bf16 needs a float32 generator, this one is float64"):
        pulse_search(tiny_generator.to(torch.float64), torch.rand(1, 3, 4, 4), steps=1, precision="bf16")


def test_bf16_search_on_the_bundled_generator_tracks_fp32():
    """The synthesis runs in bf16, the latents, noise, losses and history stay fp32, and L_DS follows
    fp32's curve on a reachable thumbnail (measured: within 1.2% over 5 steps, ~3% over 20; 15% allowed).
    Few steps: bf16 is emulated, and slow, on CPUs without AVX512-BF16/AMX."""
    from idpulse.generator.weights import load_generator

    G = load_generator("checkpoints/generator.pt")
    with torch.no_grad():
        thumb = downscale((G(torch.randn(1, 512, generator=torch.Generator().manual_seed(0))) + 1) / 2, 8).clamp(0, 1)
    seen: list = []
    hook = _dtype_hook(G.synthesis.torgb, seen)
    try:
        runs = {p: pulse_search(G, thumb, steps=3, precision=p) for p in ("fp32", "bf16")}
    finally:
        hook.remove()
    assert seen == [torch.float32] * 3 + [torch.bfloat16] * 3
    fp32, bf16 = runs["fp32"], runs["bf16"]
    for r in (fp32, bf16):
        assert r.latents.dtype == r.ws.dtype == r.images.dtype == r.ds_loss.dtype == r.total.dtype == torch.float32
        assert all(v.dtype == torch.float32 for h in r.history for v in h.values())
    a = torch.stack([h["DS_RAW"] for h in fp32.history]).double()  # (steps, 1)
    b = torch.stack([h["DS_RAW"] for h in bf16.history]).double()
    assert a.min() < 0.75 * a[0] and b.min() < 0.75 * b[0]  # both searches make progress
    assert ((a - b).abs() / a).max() < 0.15
    assert not torch.equal(a, b)  # bf16 really computed something else


def test_bf16_runs_extra_terms_under_autocast_and_keeps_control_heads_fp32(tiny_generator):
    from idpulse.align import FixedAlign
    from idpulse.control import ControlConfig, Controls
    from idpulse.extractor import FaceExtractor

    G = tiny_generator
    torch.manual_seed(0)
    f = FaceExtractor(backbone="iresnet18", width=0.125, race_classes=["White", "Black"]).eval()
    ctl = Controls(f, FixedAlign(G.resolution), ControlConfig(), race="Black")
    aligned, backbone, head = [], [], []
    _dtype_hook(ctl.align, aligned)
    _dtype_hook(f.backbone, backbone)
    _dtype_hook(f.race_head, head)
    inside = []

    def probe(img, ws):  # what a LossTerm sees: the fp32 image, inside the bf16 autocast
        inside.append((img.dtype, ws.dtype, torch.is_autocast_enabled("cpu")))
        return (img.flatten(1) @ img.flatten(1).T).diagonal()  # a matmul: bf16 under autocast

    r = pulse_search(G, torch.rand(1, 3, 4, 4), steps=2, precision="bf16",
                     extra_losses=[*ctl.terms(), LossTerm("probe", 0.0, probe)])
    assert inside == [(torch.float32, torch.float32, True)] * 2
    assert aligned == [torch.float32] * 2 and backbone == [torch.bfloat16] * 2 and head == [torch.float32] * 2
    assert r.extra["probe"].dtype == r.extra["race"].dtype == torch.float32
    assert r.history[0]["probe"].dtype == torch.float32


def test_bf16_extractor_training_step_lowers_the_loss_with_fp32_weights():
    from idpulse.data import CELEBA_ATTRIBUTES, UTKFACE_RACES
    from idpulse.extractor import FaceExtractor
    from idpulse.training.extractor_loop import RESUMABLE_CHANGES, ExtractorTrainConfig, Net

    assert "precision" in RESUMABLE_CHANGES
    torch.manual_seed(0)
    f = FaceExtractor(width=0.125, race_classes=UTKFACE_RACES, attribute_names=CELEBA_ATTRIBUTES)
    net = Net(f, 4, load_config(ExtractorTrainConfig, None, ["--precision=bf16"]))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    backbone, arc_in = [], []
    _dtype_hook(f.backbone, backbone)
    net.arc.register_forward_hook(lambda m, i, o: arc_in.append(i[0].dtype))
    x = torch.rand(4, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    batch = {"arc_x": x[:2], "arc_y": torch.tensor([0, 1]), "race_x": x[2:3], "race_y": torch.tensor([1]),
             "attr_x": x[3:], "attr_y": torch.ones(1, 40), "attr_m": torch.ones(1, 40, dtype=torch.bool)}
    losses = []
    for _ in range(2):
        terms = net(batch, 60.0, 10.0)
        assert all(v.dtype == torch.float32 for v in terms.values())
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]
    assert backbone == [torch.bfloat16] * 2 and arc_in == [torch.float32] * 2
    assert all(p.dtype == torch.float32 for p in net.parameters())  # fp32 master weights, fp32 gradients
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert len(grads) > 10 and all(g.dtype == torch.float32 for g in grads)


def test_bf16_warns_on_a_cpu_without_native_bf16(monkeypatch):
    import idpulse.precision as precision

    monkeypatch.setattr(precision, "bf16_is_fast", lambda device: False)
    monkeypatch.setattr(precision, "_warned", set())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with precision.autocast("cpu", "bf16"):
            pass
        with precision.autocast("cpu", "bf16"):  # once per device type
            pass
    assert len([x for x in w if "emulated" in str(x.message)]) == 1
