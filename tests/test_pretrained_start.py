"""Training f from a pretrained backbone (model.init): the embedding's PCA start, a frozen backbone
that keeps its weights while the embedding and heads train on its cached features, exact resume."""

import subprocess
import sys

import pytest
import torch
from test_train_extractor import args, fake_data, tiny_generator

from idpulse.extractor import load_extractor
from idpulse.extractor.mobilenet import MobileNetV1
from idpulse.extractor.model import FaceExtractor, FeatureEmbedding


def test_pca_start_is_the_whitened_projection_onto_the_top_directions():
    g = torch.Generator().manual_seed(0)
    scales = torch.linspace(3.0, 0.1, 16)
    t = torch.randn(400, 16, generator=g) * scales + 5.0  # (N, C): variance falls along the axes
    emb = FeatureEmbedding(16, 4)
    kept = emb.init_pca(t)
    assert kept == pytest.approx(float((scales[:4] ** 2).sum() / (scales ** 2).sum()), abs=0.05)
    w = emb.linear.weight.detach()
    assert torch.allclose(w @ w.T, torch.eye(4), atol=1e-5)  # orthonormal rows
    assert (w.abs().argmax(1) == torch.arange(4)).all()  # the 4 largest-variance axes, in order
    y = emb.eval()(t)  # (N, 4): centred and whitened in eval mode
    assert y.mean(0).abs().max() < 1e-4 and torch.allclose(y.var(0), torch.ones(4), atol=1e-3)
    with pytest.raises(Exception, match="at least 8 faces"):
        FeatureEmbedding(16, 8).init_pca(t[:5])


def test_embedding_sets_the_heads_size_and_survives_a_checkpoint(tmp_path):
    from idpulse.extractor import save_extractor

    f = FaceExtractor(backbone="mobilenet_v1_faceres", width=0.125, race_classes=["a", "b"], embedding=24,
                      input_order="bgr")
    assert f.dim == 24 and f(torch.rand(2, 3, 112, 112)).shape == (2, 24)
    save_extractor(f, tmp_path / "f.pt")
    g = load_extractor(tmp_path / "f.pt")
    x = torch.rand(3, 3, 112, 112)
    assert torch.equal(f.eval()(x), g(x)) and g.race_head is not None


def _init_file(path, width=0.25):
    torch.manual_seed(1)
    net = MobileNetV1(width=width)
    torch.save(net.state_dict(), path)  # a bare state dict, as scripts/convert_faceres.py writes
    return net


def _run(extra, data, gen, run, meta_epochs=2):
    argv = [a for a in args(data, gen, run) if not a.startswith(("--model.width", "--meta_epochs"))]
    r = subprocess.run([sys.executable, *argv, f"--meta_epochs={meta_epochs}", *extra], capture_output=True,
                       text=True, timeout=900)
    return r


@pytest.fixture(scope="module")
def frozen_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("pretrained")
    init = d / "init.pth"
    net = _init_file(init)
    extra = ["--model.backbone=mobilenet_v1_faceres", "--model.width=0.25", f"--model.init={init}",
             "--model.embedding=16", "--model.freeze_backbone=true", f"--cache_dir={d / 'cache'}"]
    return fake_data(d / "data"), tiny_generator(d / "g.pt"), d, net, extra


def test_frozen_backbone_keeps_its_weights_and_resumes_exactly(frozen_setup):
    data, gen, d, net, extra = frozen_setup
    r = _run(extra, data, gen, d / "full")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "PCA start" in r.stdout and "frozen" in r.stdout
    f = load_extractor(d / "full" / "extractor.pt")
    assert f.config["embedding"] == 16 and f.input_order == "bgr" and f.race_head is not None
    for k, v in net.state_dict().items():  # the backbone is the init's, bit for bit
        assert torch.equal(f.backbone.state_dict()[k], v), k
    start = FeatureEmbedding(net.num_features, 16)
    assert not torch.equal(f.embed.linear.weight, start.linear.weight)
    cached = sorted(p.name for p in (d / "cache").glob("trunk-*.pt"))
    assert [n.split("-")[1] for n in cached] == ["arc", "race"]

    # one meta-epoch, then resumed for the second: the same weights as the straight run, from the
    # cached features (not recomputed) and without a second PCA start
    r = _run(extra, data, gen, d / "split", meta_epochs=1)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _run(extra, data, gen, d / "split")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" in r.stdout and "PCA start" not in r.stdout and "once" not in r.stderr
    a = torch.load(d / "full" / "extractor.pt", weights_only=True)["state_dict"]
    b = torch.load(d / "split" / "extractor.pt", weights_only=True)["state_dict"]
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


def test_mobilenet_splits_at_any_block():
    torch.manual_seed(0)
    net = MobileNetV1(width=0.25).eval()
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        full = net(x)
        for cut in (1, 3, 13):
            t = net.head(x, cut)
            assert t.dim() == 4 and torch.allclose(net.tail(t, cut), full, atol=1e-6), cut
    assert net.head(x, 1).shape[1:] == (256, 7, 7)  # resized to 224 inside: the last block sees 7x7 maps


def test_trainable_last_block_trains_on_cached_maps_and_resumes_exactly(frozen_setup):
    """trainable_blocks=1: the backbone's last block trains (on its cached input maps), every earlier
    weight stays the init's; a run split into two resumes to the same weights."""
    data, gen, d, net, extra = frozen_setup
    extra = [*extra, "--model.trainable_blocks=1"]
    r = _run(extra, data, gen, d / "cut_full")
    assert r.returncode == 0, r.stderr[-3000:]
    f = load_extractor(d / "cut_full" / "extractor.pt")
    last = f"blocks.{len(net.blocks) - 1}."
    for k, v in net.state_dict().items():
        same = torch.equal(f.backbone.state_dict()[k], v)
        assert same != k.startswith(last), k  # the last block moved, nothing else did
    assert sorted(p.name.split("-")[2] for p in (d / "cache").glob("trunk-*-cut1-*.pt")) == ["cut1", "cut1"]
    r = _run(extra, data, gen, d / "cut_split", meta_epochs=1)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _run(extra, data, gen, d / "cut_split")
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(d / "cut_full" / "extractor.pt", weights_only=True)["state_dict"]
    b = torch.load(d / "cut_split" / "extractor.pt", weights_only=True)["state_dict"]
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


def test_backbone_lr_scales_only_the_backbones_trained_blocks(frozen_setup, tmp_path):
    """model.backbone_lr multiplies lr for the backbone's weights alone: at 0 the trainable last
    block stays the init's while the embedding still trains."""
    data, gen, d, net, extra = frozen_setup
    r = _run([*extra, "--model.trainable_blocks=1", "--model.backbone_lr=0"], data, gen, tmp_path / "r",
             meta_epochs=1)
    assert r.returncode == 0, r.stderr[-3000:]
    f = load_extractor(tmp_path / "r" / "extractor.pt")
    for k, v in net.state_dict().items():
        assert torch.equal(f.backbone.state_dict()[k], v), k
    r = _run([*extra, "--model.trainable_blocks=1", "--lr=0"], data, gen, tmp_path / "still", meta_epochs=1)
    assert r.returncode == 0, r.stderr[-3000:]
    start = load_extractor(tmp_path / "still" / "extractor.pt")  # nothing trained: the PCA start
    assert not torch.equal(f.embed.linear.weight, start.embed.linear.weight)
    r = _run([*extra, "--model.backbone_lr=-1"], data, gen, tmp_path / "bad", meta_epochs=1)
    assert r.returncode != 0 and "backbone_lr" in r.stderr and "Traceback" not in r.stderr


def test_bad_pretrained_settings_are_one_line_errors(frozen_setup, tmp_path):
    data, gen, d, _, extra = frozen_setup
    r = _run(["--model.backbone=mobilenet_v1_faceres", "--model.width=0.25", "--model.freeze_backbone=true"],
             data, gen, tmp_path / "a", meta_epochs=1)
    assert r.returncode != 0 and "needs model.init" in r.stderr and "Traceback" not in r.stderr
    other = tmp_path / "w50.pth"
    _init_file(other, width=0.5)
    r = _run([*extra, f"--model.init={other}"], data, gen, tmp_path / "b", meta_epochs=1)
    assert r.returncode != 0 and "width 0.5" in r.stderr and "Traceback" not in r.stderr
    r = _run([*extra, f"--model.init={tmp_path / 'missing.pth'}"], data, gen, tmp_path / "c", meta_epochs=1)
    assert r.returncode != 0 and "not a file" in r.stderr and "Traceback" not in r.stderr


def test_an_idpulse_extractor_gives_its_backbone_as_the_start(tmp_path):
    """model.init may name one of our extractor checkpoints (the bundled f_arc, say): its backbone
    alone is the start, so a run can fine-tune what a CPU run trained frozen."""
    from idpulse.errors import UserError
    from idpulse.extractor import save_extractor
    from idpulse.training.pretrained import load_pretrained_backbone

    torch.manual_seed(3)
    src = FaceExtractor(backbone="mobilenet_v1_faceres", width=0.25, embedding=16, input_order="bgr")
    save_extractor(src, tmp_path / "f.pt")
    f = FaceExtractor(backbone="mobilenet_v1_faceres", width=0.25, embedding=16, input_order="bgr")
    embed_before = f.embed.linear.weight.clone()
    load_pretrained_backbone(f, str(tmp_path / "f.pt"))
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(f.backbone.state_dict()[k], v), k
    assert torch.equal(f.embed.linear.weight, embed_before)  # the embedding is not taken
    other = FaceExtractor(backbone="iresnet18", width=0.25)
    with pytest.raises(UserError, match="holds a mobilenet_v1_faceres backbone, but model.backbone is iresnet18"):
        load_pretrained_backbone(other, str(tmp_path / "f.pt"))
