"""Backbones load insightface's and TreB1eN's layouts strictly; heads and Eq. 4 behave as defined."""

import math

import pytest
import torch

from idpulse.extractor import ArcFaceHead, AttributeHead, RaceHead, angle_deg, get_backbone, similarity_loss


def _bn(keys, name, c, one_d=False):
    for k in ("weight", "bias", "running_mean", "running_var"):
        keys[f"{name}.{k}"] = (c,)
    keys[f"{name}.num_batches_tracked"] = ()


def insightface_iresnet_layout(layers):
    """Key -> shape of arcface_torch's IResNet, from its documented structure."""
    keys = {"conv1.weight": (64, 3, 3, 3)}
    _bn(keys, "bn1", 64)
    keys["prelu.weight"] = (64,)
    cin = 64
    for li, (n, c) in enumerate(zip(layers, (64, 128, 256, 512))):
        for b in range(n):
            p, ci = f"layer{li + 1}.{b}.", (cin if b == 0 else c)
            _bn(keys, p + "bn1", ci)
            keys[p + "conv1.weight"] = (c, ci, 3, 3)
            _bn(keys, p + "bn2", c)
            keys[p + "prelu.weight"] = (c,)
            keys[p + "conv2.weight"] = (c, c, 3, 3)
            _bn(keys, p + "bn3", c)
            if b == 0:  # every stage starts with stride 2, so with a projection
                keys[p + "downsample.0.weight"] = (c, ci, 1, 1)
                _bn(keys, p + "downsample.1", c)
        cin = c
    _bn(keys, "bn2", 512)
    keys["fc.weight"], keys["fc.bias"] = (512, 512 * 49), (512,)
    _bn(keys, "features", 512)
    return keys


def treb1en_ir_se50_layout():
    keys = {"input_layer.0.weight": (64, 3, 3, 3)}
    _bn(keys, "input_layer.1", 64)
    keys["input_layer.2.weight"] = (64,)
    i, cin = 0, 64
    for n, d in zip((3, 4, 14, 3), (64, 128, 256, 512)):
        for b in range(n):
            ci = cin if b == 0 else d
            p = f"body.{i}."
            if ci != d:
                keys[p + "shortcut_layer.0.weight"] = (d, ci, 1, 1)
                _bn(keys, p + "shortcut_layer.1", d)
            _bn(keys, p + "res_layer.0", ci)
            keys[p + "res_layer.1.weight"] = (d, ci, 3, 3)
            keys[p + "res_layer.2.weight"] = (d,)
            keys[p + "res_layer.3.weight"] = (d, d, 3, 3)
            _bn(keys, p + "res_layer.4", d)
            keys[p + "res_layer.5.fc1.weight"] = (d // 16, d, 1, 1)
            keys[p + "res_layer.5.fc2.weight"] = (d, d // 16, 1, 1)
            i += 1
        cin = d
    _bn(keys, "output_layer.0", 512)
    keys["output_layer.3.weight"], keys["output_layer.3.bias"] = (512, 512 * 49), (512,)
    _bn(keys, "output_layer.4", 512)
    return keys


def _random_state(layout):
    g = torch.Generator().manual_seed(0)
    def value(k, s):
        if s == ():
            return torch.tensor(7)  # num_batches_tracked
        if "running_var" in k:
            return 1 + torch.rand(s, generator=g)
        return torch.randn(s, generator=g) * 0.02

    return {k: value(k, s) for k, s in layout.items()}


@pytest.mark.parametrize("name,layers", [("iresnet18", [2, 2, 2, 2]), ("iresnet50", [3, 4, 14, 3]),
                                         ("iresnet100", [3, 13, 30, 3])])
def test_insightface_layout_loads_strictly(name, layers):
    model = get_backbone(name)
    layout = insightface_iresnet_layout(layers)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout
    state = _random_state(layout)
    model.load_state_dict(state, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    if name == "iresnet18":
        out = model.eval()(torch.rand(2, 3, 112, 112) * 2 - 1)
        assert out.shape == (2, 512) and torch.isfinite(out).all()


def test_treb1en_ir_se50_layout_loads_strictly():
    model = get_backbone("ir_se50")
    layout = treb1en_ir_se50_layout()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout
    model.load_state_dict(_random_state(layout), strict=True)
    out = model.eval()(torch.rand(1, 3, 112, 112))
    assert out.shape == (1, 512) and torch.allclose(out.norm(dim=1), torch.ones(1), atol=1e-5)


def test_width_multiplier_keeps_interface():
    small = get_backbone("iresnet18", width=0.25)
    full = get_backbone("iresnet18")
    assert sum(p.numel() for p in small.parameters()) < 0.2 * sum(p.numel() for p in full.parameters())
    assert small.eval()(torch.rand(2, 3, 112, 112)).shape == (2, 512)
    with pytest.raises(ValueError, match="unknown backbone"):
        get_backbone("resnet9000")


def test_arcface_margin_and_fallback():
    head = ArcFaceHead(3, dim=2, s=64.0, m=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    for theta in (0.3, 2.0, 3.0):  # 3.0 + 0.5 > pi: the cos(theta) - m sin(m) branch
        x = torch.tensor([[math.cos(theta), math.sin(theta)]])
        logits = head.logits(x, torch.tensor([0]))
        want = math.cos(theta + 0.5) if theta + 0.5 <= math.pi else math.cos(theta) - 0.5 * math.sin(0.5)
        assert logits[0, 0].item() == pytest.approx(64 * want, rel=1e-4)
        assert logits[0, 1].item() == pytest.approx(64 * math.sin(theta), abs=1e-3)  # no margin off-target
    loss = head(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    assert loss.item() >= 0


def test_similarity_loss_eq4():
    a = torch.tensor([10.0, 65.0, 120.0])
    same, diff = similarity_loss(a, 1.0), similarity_loss(a, 0.0)
    assert same[0] < same[1] < same[2] and diff[0] > diff[1] > diff[2]
    assert same[1].item() == pytest.approx(math.log(2)) == diff[1].item()
    f = torch.randn(4, 512)
    assert torch.allclose(angle_deg(f, f), torch.zeros(4), atol=0.1)
    assert torch.allclose(angle_deg(f, -f), torch.full((4,), 180.0), atol=0.1)


def test_heads():
    race = RaceHead(["A", "B", "C"])
    assert race(torch.randn(5, 512)).shape == (5, 3)
    assert race.loss(torch.randn(5, 512), torch.tensor([0, 1, 2, 0, 1])).shape == (5,)
    attr = AttributeHead(["x", "y"], pos_rate=torch.tensor([0.1, 0.5]))
    with torch.no_grad():
        attr.mlp[2].weight.zero_()
        attr.mlp[2].bias.zero_()  # predicts p = 0.5 for everything
    f = torch.randn(2, 512)
    pos = attr.loss(f, torch.tensor([[1, 1], [1, 1]]))
    neg = attr.loss(f, torch.tensor([[0, 0], [0, 0]]))
    assert (pos > neg).all()  # the rare positive class of attribute x weighs more
    req = attr.requested_loss(f, {0: 1})
    assert torch.allclose(req, torch.full((2,), math.log(2)), atol=1e-5)


def test_extractor_checkpoint_round_trip(tmp_path):
    from idpulse.errors import CheckpointError
    from idpulse.extractor import FaceExtractor, load_extractor, save_extractor

    torch.manual_seed(0)
    f = FaceExtractor(backbone="iresnet18", width=0.125, race_classes=["a", "b"], attribute_names=["x"],
                      theta_thr=60.0).eval()
    save_extractor(f, tmp_path / "f.pt", meta={"note": 1})
    g = load_extractor(tmp_path / "f.pt")
    x = torch.rand(2, 3, 112, 112)
    assert torch.equal(f(x), g(x)) and g.theta_thr == 60.0 and g.race_head.class_names == ["a", "b"]
    sd = torch.load(tmp_path / "f.pt", weights_only=True)
    sd["state_dict"].pop("race_head.mlp.0.weight")
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="missing keys: race_head.mlp.0.weight"):
        load_extractor(tmp_path / "bad.pt")


def test_fixed_alignment_maps_crop_template_onto_arcface_template():
    from idpulse.align import ARCFACE_112, FixedAlign, crop_template

    size = 64
    img = torch.zeros(1, 3, size, size, requires_grad=True)
    with torch.no_grad():
        for x, y in crop_template(size).round().astype(int):
            img[0, :, y, x] = 1.0  # a dot on each landmark of the generator's frame
    out = FixedAlign(size)(img)
    assert out.shape == (1, 3, 112, 112)
    for x, y in ARCFACE_112:
        patch = out[0, 0, int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3]
        assert patch.max() > 0.1  # each dot lands near its ArcFace position
    out.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0  # differentiable in the pixels


def test_detected_alignment_agrees_with_fixed_on_an_aligned_face():
    from PIL import Image
    from skimage import data

    from idpulse.align import DetectedAlign, FaceDetector, FixedAlign, align_face

    photo = Image.fromarray(data.astronaut())
    lm = FaceDetector().landmarks(photo)
    face = align_face(photo, lm, 128)[None]  # (1, 3, 128, 128), in the crop template's frame
    det = DetectedAlign(128)
    a, b = det(face), FixedAlign(128)(face)
    assert det.found == [True]
    assert (a - b).abs().mean() < 0.03  # same frame up to landmark noise
    blank = torch.full((1, 3, 128, 128), 0.5)
    assert torch.allclose(det(blank), FixedAlign(128)(blank)) and det.found == [False]


def test_bare_insightface_backbone_as_extractor(tmp_path):
    from idpulse.errors import CheckpointError
    from idpulse.extractor import load_any_extractor

    net = get_backbone("iresnet18", width=1.0)
    torch.save(net.state_dict(), tmp_path / "backbone.pth")
    f = load_any_extractor(tmp_path / "backbone.pth", "iresnet18")
    assert f.race_head is None and f.attr_head is None
    x = torch.rand(1, 3, 112, 112)
    assert torch.allclose(f(x), net.eval()(x * 2 - 1))  # insightface's [-1, 1] input normalisation
    with pytest.raises(CheckpointError, match="does not fit"):
        load_any_extractor(tmp_path / "backbone.pth", "iresnet50")
