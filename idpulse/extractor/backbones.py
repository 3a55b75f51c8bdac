"""Face-recognition backbones: 112x112 RGB in [-1, 1] -> 512-D features.

- IResNet-18/34/50/100 in insightface's `arcface_torch` layout (`conv1`, `layer1.0.bn1`, ...,
  `fc`, `features`), so its `backbone.pth` loads strictly;
- IR / IR-SE 50/100/152 in TreB1eN's InsightFace_Pytorch layout (`input_layer`, `body.N.res_layer`,
  `output_layer`), so its `model_ir_se50.pth` loads strictly;
- MobileFaceNet `mbf` / `mbf_large` in insightface's `arcface_torch/backbones/mobilefacenet.py`
  layout (`layers.N.layers...`, `conv_sep`, `features.layers...`);
- `mobilenet_v1_faceres`: HSE_FaceRec_tf's VGGFace2 MobileNet-v1 (`mobilenet.py`; `stem`,
  `blocks.N.depthwise`, `blocks.N.pointwise`), converted from its tfjs graph by
  `scripts/convert_faceres.py`. Unlike the others it gives 1024-D features and runs at 224x224 on
  BGR 0-255 minus the Caffe means: it takes the same BGR [-1, 1] 112x112 faces as TreB1eN's models
  and resizes and renormalises them itself.
`width` scales every channel count (width 1 is the published layout; smaller widths make CPU-sized
models with the same structure). `get_backbone(name)` builds any of them; `infer_backbone(state)`
names the one a bare state dict was saved from, by its keys and shapes.

Input conventions of the published weights (all take 112x112 faces normalised as (x/255 - 0.5)/0.5,
i.e. [-1, 1]): insightface's arcface_torch models are trained and run on RGB (its training data is
decoded by mxnet, which gives RGB; its `inference.py` reads with cv2 and converts BGR to RGB), while
TreB1eN's IR/IR-SE models are trained and evaluated on BGR (their recordio images are decoded by cv2
and saved through PIL unconverted; their eval bins are converted RGB->BGR). `FaceExtractor`'s
`input_order` records which one a backbone wants.
"""

from __future__ import annotations

import itertools
import re
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from .mobilenet import STEM_CHANNELS, MobileNetV1

BackboneName = Literal["iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200", "ir50", "ir_se50", "ir100",
                       "ir_se100", "ir152", "ir_se152", "mbf", "mbf_large", "mobilenet_v1_faceres"]
BACKBONES = list(get_args(BackboneName))
ALIASES = {"r18": "iresnet18", "r34": "iresnet34", "r50": "iresnet50", "r100": "iresnet100", "r200": "iresnet200",
           "ir_50": "ir50", "ir_100": "ir100", "ir_152": "ir152", "ir_se_50": "ir_se50"}  # their own spellings
IRESNET_LAYERS = {"iresnet18": [2, 2, 2, 2], "iresnet34": [3, 4, 6, 3], "iresnet50": [3, 4, 14, 3],
                  "iresnet100": [3, 13, 30, 3], "iresnet200": [6, 26, 60, 6]}
IRSE_UNITS = {50: [3, 4, 14, 3], 100: [3, 13, 30, 3], 152: [3, 8, 36, 3]}
MBF_SHAPES = {"mbf": ((1, 4, 6, 2), 2), "mbf_large": ((2, 8, 12, 4), 4)}  # name -> (blocks, scale)
TREB1EN_BACKBONES = ("ir50", "ir_se50", "ir100", "ir_se100", "ir152", "ir_se152")  # trained on BGR
FACERES = "mobilenet_v1_faceres"  # HSE_FaceRec_tf's, converted from tfjs: BGR (Caffe style), 1024-D
BGR_BACKBONES = TREB1EN_BACKBONES + (FACERES,)  # input_order "auto" gives these BGR


def _ch(c: int, width: float) -> int:
    return max(8, int(round(c * width)))


class IBasicBlock(nn.Module):
    """BN, conv3x3, BN, PReLU, conv3x3 (stride), BN, plus the (projected) input."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    """insightface arcface_torch IResNet: (B, 3, 112, 112) -> (B, num_features)."""

    def __init__(self, layers: list[int], *, width: float = 1.0, num_features: int = 512, dropout: float = 0.0):
        super().__init__()
        c0 = _ch(64, width)
        self.conv1 = nn.Conv2d(3, c0, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c0, eps=1e-5)
        self.prelu = nn.PReLU(c0)
        cin = c0
        for i, (n, c) in enumerate(zip(layers, (64, 128, 256, 512))):
            cout = _ch(c, width)
            blocks = [IBasicBlock(cin, cout, 2)] + [IBasicBlock(cout, cout, 1) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad_(False)  # as in arcface_torch: a scale-free BN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512w, 7, 7)
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


class SEModule(nn.Module):
    def __init__(self, c: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(c, max(1, c // reduction), 1, bias=False)
        self.fc2 = nn.Conv2d(max(1, c // reduction), c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class BottleneckIR(nn.Module):
    """TreB1eN's bottleneck_IR(_SE): res_layer = BN, conv3x3, PReLU, conv3x3 (stride), BN [, SE]."""

    def __init__(self, cin: int, cout: int, stride: int, se: bool):
        super().__init__()
        if cin == cout:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        mods = [nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.PReLU(cout),
                nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]
        if se:
            mods.append(SEModule(cout, 16))
        self.res_layer = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSE(nn.Module):
    """TreB1eN's Backbone(num_layers, mode='ir'|'ir_se'): (B, 3, 112, 112) -> unit-norm (B, 512)."""

    def __init__(self, num_layers: int = 50, *, se: bool = True, width: float = 1.0, dropout: float = 0.0):
        super().__init__()
        c0 = _ch(64, width)
        self.input_layer = nn.Sequential(nn.Conv2d(3, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0), nn.PReLU(c0))
        body, cin = [], c0
        for n, c in zip(IRSE_UNITS[num_layers], (64, 128, 256, 512)):
            cout = _ch(c, width)
            body += [BottleneckIR(cin, cout, 2, se)] + [BottleneckIR(cout, cout, 1, se) for _ in range(n - 1)]
            cin = cout
        self.body = nn.Sequential(*body)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(cin), nn.Dropout(dropout), nn.Flatten(),
                                          nn.Linear(cin * 7 * 7, 512), nn.BatchNorm1d(512))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=1)


class ConvBN(nn.Module):
    """arcface_torch mobilefacenet's ConvBlock (conv, BN, PReLU) or LinearBlock (prelu=False):
    the modules sit in `self.layers`, as their key names need."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1,
                 prelu: bool = True):
        super().__init__()
        mods = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        self.layers = nn.Sequential(*mods, *([nn.PReLU(cout)] if prelu else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """1x1 expand to `hidden`, depthwise 3x3 (stride), 1x1 linear projection [+ input]."""

    def __init__(self, cin: int, cout: int, hidden: int, stride: int, residual: bool):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(ConvBN(cin, hidden), ConvBN(hidden, hidden, 3, stride, 1, groups=hidden),
                                    ConvBN(hidden, cout, prelu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


class Residual(nn.Module):
    def __init__(self, c: int, n: int, hidden: int):
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(c, c, hidden, 1, True) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(nn.Module):
    """insightface arcface_torch MobileFaceNet (`get_mbf`: blocks (1, 4, 6, 2), scale 2;
    `get_mbf_large`: (2, 8, 12, 4), scale 4): (B, 3, 112, 112) -> (B, num_features), not normalised.
    112 -> 56 (stem) -> 28 -> 14 -> 7 (three stride-2 DepthWise), then a 7x7 depthwise GDC head."""

    def __init__(self, blocks: tuple[int, ...] = (1, 4, 6, 2), scale: int = 2, *, width: float = 1.0,
                 num_features: int = 512):
        super().__init__()
        c1, c2 = _ch(64 * scale, width), _ch(128 * scale, width)
        h1, h2, h3, g = _ch(128, width), _ch(256, width), _ch(512, width), _ch(64, width)
        stem2 = (ConvBN(c1, c1, 3, 1, 1, groups=g) if blocks[0] == 1 else Residual(c1, blocks[0], h1))
        self.layers = nn.ModuleList([
            ConvBN(3, c1, 3, 2, 1), stem2,  # (B, c1, 56, 56)
            DepthWise(c1, c1, h1, 2, False), Residual(c1, blocks[1], h1),  # (B, c1, 28, 28)
            DepthWise(c1, c2, h2, 2, False), Residual(c2, blocks[2], h2),  # (B, c2, 14, 14)
            DepthWise(c2, c2, h3, 2, False), Residual(c2, blocks[3], h2),  # (B, c2, 7, 7)
        ])
        c = _ch(512, width)
        self.conv_sep = ConvBN(c2, c)
        # GDC: a 7x7 depthwise conv to (B, c, 1, 1), flatten, a bias-free linear map, BN
        self.features = nn.Module()
        self.features.layers = nn.Sequential(ConvBN(c, c, 7, 1, 0, groups=c, prelu=False), nn.Flatten(),
                                             nn.Linear(c, num_features, bias=False), nn.BatchNorm1d(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.features.layers(self.conv_sep(x))


def get_backbone(name: str, *, width: float = 1.0, num_features: int = 512, dropout: float = 0.0) -> nn.Module:
    """One of BACKBONES (or insightface's `r50`-style alias); `width` < 1 for small CPU models of the
    same structure."""
    name = ALIASES.get(name, name)
    if name == FACERES:  # its features are the pooled 1024 * width channels: no embedding layer to size
        if num_features != 512 or dropout:
            raise ValueError(f"{FACERES} has no embedding layer: its features are its 1024-D pooled channels")
        return MobileNetV1(width=width)
    if name in IRESNET_LAYERS:
        return IResNet(IRESNET_LAYERS[name], width=width, num_features=num_features, dropout=dropout)
    if name in TREB1EN_BACKBONES:
        if num_features != 512:
            raise ValueError("TreB1eN's IR/IR-SE backbones have 512-D outputs")
        return IRSE(int(re.sub(r"\D", "", name)), se="se" in name, width=width, dropout=dropout)
    if name in MBF_SHAPES:
        blocks, scale = MBF_SHAPES[name]
        return MobileFaceNet(blocks, scale, width=width, num_features=num_features)
    raise ValueError(f"unknown backbone {name!r} (use one of {', '.join(BACKBONES)})")


def describe_backbone(name: str) -> str:
    """Whose layout a backbone name is: "insightface iresnet50", "TreB1eN ir_se50", ..."""
    if name == FACERES:
        return f"HSE_FaceRec_tf faceres (tfjs, converted) {name}"
    return f"{'TreB1eN' if name in TREB1EN_BACKBONES else 'insightface'} {name}"


def _indices(state: dict, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})


def _width(state: dict, keys: tuple[str, ...], base: int) -> float:
    """Width multiplier from the first of `keys` present (the stem's channels), else 1."""
    c0 = next((int(state[k].shape[0]) for k in keys if k in state), base)
    return 1.0 if c0 == base else c0 / base


def infer_backbone(state: dict, what: str = "weights") -> tuple[str, float]:
    """(name, width) of the backbone a bare state dict was saved from, by its key names and shapes:
    arcface_torch IResNet by the blocks per `layerN`, TreB1eN IR/IR-SE by the units per stage of
    `body.N` (a stage starts where the channel count changes) and SE keys, MobileFaceNet by the
    blocks of its Residual stages, the converted faceres MobileNet-v1 by its `stem` and
    `blocks.N.depthwise` keys. Each clue has fallbacks, so that a file missing one weight still
    gets a name, and the strict load that follows names the missing key."""
    keys = list(state)
    if any(re.match(r"layer1\.0\.", k) for k in keys) and not any(k.startswith("body.") for k in keys):
        layers = [len(_indices(state, rf"layer{i}\.(\d+)\.")) for i in range(1, 5)]
        for name, want in IRESNET_LAYERS.items():
            if layers == want:
                return name, _width(state, ("conv1.weight", "bn1.weight", "prelu.weight", "layer1.0.bn1.weight"), 64)
        raise CheckpointError(f"{what}: an insightface IResNet with {layers} blocks per stage, which is none of "
                              f"{', '.join(f'{n} {v}' for n, v in IRESNET_LAYERS.items())}")
    if any(re.match(r"body\.\d+\.res_layer\.", k) for k in keys):
        units = _indices(state, r"body\.(\d+)\.")
        chans = []  # output channels per unit, from any of its residual branch's weights
        for i in units:
            c = next((int(state[k].shape[0]) for j in (1, 2, 3, 4) if (k := f"body.{i}.res_layer.{j}.weight") in state),
                     None)
            if c is None:
                raise CheckpointError(f"{what}: TreB1eN-style unit body.{i} has no res_layer weights")
            chans.append(c)
        stages = [sum(1 for _ in g) for _, g in itertools.groupby(chans)]
        se = any(".res_layer.5.fc1." in k for k in keys)
        for n, want in IRSE_UNITS.items():
            if stages == want and units == list(range(len(units))):
                return f"{'ir_se' if se else 'ir'}{n}", _width(state, ("input_layer.0.weight", "input_layer.1.weight",
                                                                       "input_layer.2.weight"), 64)
        raise CheckpointError(f"{what}: a TreB1eN IR{'-SE' if se else ''} backbone with {stages} units per stage, "
                              f"which is none of {', '.join(f'{n} {v}' for n, v in IRSE_UNITS.items())}")
    if any(k.startswith("conv_sep.") for k in keys) and any(re.match(r"layers\.\d+\.layers\.", k) for k in keys):
        def count(i):  # DepthWise blocks in a Residual at layers.i, or 1 for the ConvBN stem of mbf
            return len(_indices(state, rf"layers\.{i}\.layers\.(\d+)\.layers\.\d+\.layers\.")) or 1
        blocks = (count(1), count(3), count(5), count(7))
        for name, (want, scale) in MBF_SHAPES.items():
            if blocks == want:
                return name, _width(state, ("layers.0.layers.0.weight", "layers.0.layers.1.weight",
                                            "layers.0.layers.2.weight"), 64 * scale)
        raise CheckpointError(f"{what}: an insightface MobileFaceNet with blocks {blocks}, which is none of "
                              f"{', '.join(f'{n} {b}' for n, (b, _) in MBF_SHAPES.items())}")
    if any(re.match(r"blocks\.\d+\.depthwise\.", k) for k in keys) and any(k.startswith("stem.") for k in keys):
        return FACERES, _width(state, ("stem.weight", "stem.bias"), STEM_CHANNELS)  # converted by convert_faceres
    first = sorted(keys)[:3]
    raise CheckpointError(f"{what} is no known face-recognition backbone (insightface arcface_torch IResNet or "
                          f"MobileFaceNet, TreB1eN IR/IR-SE, converted faceres MobileNet-v1): its first keys are "
                          f"{', '.join(first) or 'none'}")
