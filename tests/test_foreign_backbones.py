"""Published face-recognition weight files load with their architecture inferred and give the same
features as their authors' own code (insightface arcface_torch r50 and mbf, TreB1eN's IR-SE-50).

tests/data/foreign_features.json holds features that the authors' model classes (arcface_torch
`backbones/iresnet.py` and `mobilefacenet.py` at insightface 7fadd42, TreB1eN's `model.py` at
350ff7a) computed in float64, outside this repository, on the state dict `deterministic_state`
builds from the key names and shapes alone, and on `sample_images()` put through their own
preprocessing: arcface_torch's `inference.py` (cv2 BGR read -> RGB, (x/255 - 0.5)/0.5) and
TreB1eN's `test_transform` on BGR images (ToTensor, Normalize(0.5, 0.5)). Here the same weights go
through a bare `.pth` file, our loader (backbone inferred) and `FaceExtractor`, which gets the
images as RGB in [0, 1]. The values are drawn with numpy's legacy RandomState (a stream numpy
keeps fixed) and stored as float32, so the weights are bit-identical on any machine; the forward
passes run in float64, so only the rounding of the convolutions' summation order differs.
"""

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from idpulse.errors import CheckpointError, UserError
from idpulse.extractor import get_backbone, infer_backbone, load_any_extractor

FIXTURE = Path(__file__).parent / "data" / "foreign_features.json"


def deterministic_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """A state dict from key names and shapes alone: each key's values come from a RandomState
    seeded by crc32(key), scaled so activations stay O(1) through 100 layers: conv/linear weights
    uniform with variance 1/fan_in, 1-D weights (BN scale, PReLU slope) in [0.5, 1], biases and
    running means in [-0.1, 0.1], running variances in [0.5, 1.5] (positive)."""
    out = {}
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(0, dtype=torch.int64)
            continue
        u = np.random.RandomState(zlib.crc32(k.encode())).random_sample(s)  # float64 in [0, 1)
        if k.endswith("running_var"):
            v = 0.5 + u
        elif k.endswith(("running_mean", "bias")):
            v = 0.1 * (2 * u - 1)
        elif len(s) == 1:
            v = 0.5 + 0.5 * u
        else:
            v = (2 * u - 1) * np.sqrt(3.0 / int(np.prod(s[1:])))
        out[k] = torch.from_numpy(np.asarray(v, dtype=np.float32))
    return out


def sample_images() -> np.ndarray:
    """Two 112x112 RGB uint8 images, (2, 112, 112, 3): smooth ramps plus noise, every channel different."""
    rs = np.random.RandomState(20211)
    y, x = np.mgrid[0:112, 0:112]
    ramps = np.stack([x * 2, y * 2, (x + y)], axis=-1)[None]  # (1, 112, 112, 3)
    return np.clip(ramps + rs.randint(-40, 41, size=(2, 112, 112, 3)), 0, 255).astype(np.uint8)



def _shapes(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no memory for the weights
        return {k: tuple(v.shape) for k, v in get_backbone(name).state_dict().items()}


# what each published file's name is here, and how it was saved: TreB1eN's files predate PyTorch
# 0.4.1, so they have no num_batches_tracked; r50's copy carries DataParallel's `module.` prefix
FOREIGN = {"r50": ("iresnet50", "rgb", "plain"), "mbf": ("mbf", "rgb", "plain"),
           "ir_se50": ("ir_se50", "bgr", "no num_batches_tracked"),
           "r100": ("iresnet100", "rgb", "module. prefix")}
SLOW = {"r100"}  # float64 r100 takes ~20 s on 2 CPU cores: IDPULSE_SLOW_TESTS=1 runs it, and both images


def _write_foreign(path: Path, name: str, how: str) -> None:
    state = deterministic_state(_shapes(name))
    if how == "no num_batches_tracked":
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    elif how == "module. prefix":
        state = {"module." + k: v for k, v in state.items()}
    torch.save(state, path)


@pytest.mark.parametrize("theirs", list(FOREIGN))
def test_same_features_as_their_code(theirs, tmp_path):
    import os

    slow = bool(os.environ.get("IDPULSE_SLOW_TESTS"))
    if theirs in SLOW and not slow:
        pytest.skip("float64 r100 is slow: set IDPULSE_SLOW_TESTS=1")
    n = 2 if slow else 1  # float64 convolutions are slow on CPU (mbf's depthwise ones most): one image by default
    name, order, how = FOREIGN[theirs]
    path = tmp_path / "backbone.pth"
    _write_foreign(path, name, how)
    f = load_any_extractor(path)  # backbone "auto": inferred from the keys
    assert f.config["backbone"] == name and f.config["width"] == 1.0 and f.input_order == order
    assert f.race_head is None and f.attr_head is None
    assert f.describe().endswith(f"(inferred from the file's keys), {order.upper()} input")
    want = {k: v[:n] for k, v in json.loads(FIXTURE.read_text())["features"][theirs].items()}
    faces = torch.from_numpy(sample_images()[:n]).permute(0, 3, 1, 2).double() / 255  # (n, 3, 112, 112) RGB in [0, 1]
    f = f.double()
    with torch.no_grad():
        got = f(faces)  # (n, 512)
    scale = max(abs(v) for row in want["first16"] for v in row)  # entries near 0 are judged on the feature's scale
    np.testing.assert_allclose(got[:, :16].numpy(), np.array(want["first16"]), rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(got.norm(dim=1).numpy(), want["norm"], rtol=1e-9)
    np.testing.assert_allclose(got.sum(dim=1).numpy(), want["sum"], rtol=1e-9, atol=1e-9 * max(want["norm"]))
    if order == "bgr":  # the channel order is what makes them agree: RGB input gives other features
        with torch.no_grad():
            wrong = f(faces.flip(1))
        assert (wrong[:, :16] - got[:, :16]).abs().max() > 1e-3 * scale


def test_inference_names_each_architecture():
    for name in ["iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200", "ir50", "ir_se50", "ir100",
                 "ir_se100", "ir152", "ir_se152", "mbf", "mbf_large"]:
        assert infer_backbone(_shapes_as_tensors(name)) == (name, 1.0), name
    with torch.device("meta"):
        small = get_backbone("ir_se50", width=0.25).state_dict()
    assert infer_backbone(small) == ("ir_se50", 0.25)  # width from the stem's channels


def _shapes_as_tensors(name):
    with torch.device("meta"):
        return get_backbone(name).state_dict()


def _small_file(tmp_path, name="iresnet18", drop=(), width=0.125):
    net = get_backbone(name, width=width)
    state = {k: v for k, v in net.state_dict().items() if k not in drop}
    torch.save(state, tmp_path / "b.pth")
    return net.eval(), tmp_path / "b.pth"


def test_missing_batch_counts_load_but_a_missing_weight_is_named(tmp_path):
    net, path = _small_file(tmp_path, "ir_se50", drop=[k for k in get_backbone("ir_se50", width=0.125).state_dict()
                                                        if k.endswith("num_batches_tracked")])
    f = load_any_extractor(path)
    x = torch.rand(1, 3, 112, 112)
    assert torch.allclose(f(x), net(x.flip(1) * 2 - 1))  # BGR, [-1, 1]
    _, path = _small_file(tmp_path, "ir_se50", drop=["body.3.res_layer.1.weight"])
    with pytest.raises(CheckpointError) as e:
        load_any_extractor(path)
    msg = str(e.value)
    assert "\n" not in msg and "missing keys: body.3.res_layer.1.weight" in msg and "num_batches" not in msg
    _, path = _small_file(tmp_path, "mbf", drop=["conv_sep.layers.1.num_batches_tracked", "conv_sep.layers.0.weight"])
    with pytest.raises(CheckpointError, match=r"missing keys: conv_sep\.layers\.0\.weight$"):
        load_any_extractor(path)  # a missing counter is fine, the missing weight is not


def test_unexpected_keys_and_the_generator_stay_strict(tmp_path):
    from idpulse.checkpoint import load_state_dict_strict

    net, _ = _small_file(tmp_path)
    state = net.state_dict()
    torch.save({**state, "head.weight": torch.zeros(2)}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="unexpected keys: head.weight"):
        load_any_extractor(tmp_path / "extra.pth")
    no_counts = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    with pytest.raises(CheckpointError, match="missing keys: .*num_batches_tracked"):
        load_state_dict_strict(get_backbone("iresnet18", width=0.125), no_counts, "x")  # the default is strict


def test_explicit_backbone_must_match_the_file(tmp_path):
    net, path = _small_file(tmp_path, "mbf")
    f = load_any_extractor(path, "mbf")
    assert "(as given)" in f.describe() and "width 0.125" in f.describe()
    x = torch.rand(2, 3, 112, 112)
    assert torch.allclose(f(x), net(x * 2 - 1))  # insightface's mbf: RGB, [-1, 1]
    with pytest.raises(CheckpointError) as e:
        load_any_extractor(path, "ir_se50")
    assert "\n" not in str(e.value) and "ir_se50" in str(e.value) and "insightface mbf" in str(e.value)
    with pytest.raises(UserError, match="unknown backbone 'resnet9000'"):
        load_any_extractor(path, "resnet9000")
    f = load_any_extractor(path, "mbf", input_order="bgr")  # an explicit channel order wins
    assert f.input_order == "bgr" and torch.allclose(f(x), net(x.flip(1) * 2 - 1))


def test_module_prefix_and_unknown_files(tmp_path):
    net, _ = _small_file(tmp_path)
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, tmp_path / "dp.pth")
    f = load_any_extractor(tmp_path / "dp.pth")
    assert f.config["backbone"] == "iresnet18" and f.config["width"] == 0.125
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError) as e:
        load_any_extractor(tmp_path / "other.pth")
    assert "\n" not in str(e.value) and "no known face-recognition backbone" in str(e.value)
    with torch.device("meta"):
        state = get_backbone("iresnet50").state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("layer3.13.")}  # 13 blocks in stage 3
    with pytest.raises(CheckpointError, match=r"\[3, 4, 13, 3\] blocks per stage"):
        infer_backbone(state)


def test_input_order_is_saved_and_old_checkpoints_are_rgb(tmp_path):
    from idpulse.extractor import FaceExtractor, load_extractor, save_extractor

    f = FaceExtractor(backbone="iresnet18", width=0.125, input_order="bgr").eval()
    save_extractor(f, tmp_path / "f.pt")
    g = load_extractor(tmp_path / "f.pt")
    x = torch.rand(1, 3, 112, 112)
    assert g.input_order == "bgr" and torch.allclose(g(x), f(x)) and torch.allclose(f(x), f.backbone(x.flip(1) * 2 - 1))
    ckpt = torch.load(tmp_path / "f.pt", weights_only=True)
    del ckpt["config"]["input_order"]  # a checkpoint saved before input_order existed
    torch.save(ckpt, tmp_path / "old.pt")
    old = load_any_extractor(tmp_path / "old.pt", "iresnet100")  # backbone applies to bare files only
    assert old.input_order == "rgb" and torch.allclose(old(x), f.backbone(x * 2 - 1))
    assert old.describe() == "idpulse extractor iresnet18 (from its checkpoint), RGB input"
    with pytest.raises(ValueError, match="input_order"):
        FaceExtractor(input_order="rbg")
