"""Face-recognition backbones: 112x112 RGB in [-1, 1] -> 512-D features.

- IResNet-18/34/50/100 in insightface's `arcface_torch` layout (`conv1`, `layer1.0.bn1`, ...,
  `fc`, `features`), so its `backbone.pth` loads strictly;
- IR-50 / IR-SE-50 in TreB1eN's InsightFace_Pytorch layout (`input_layer`, `body.N.res_layer`,
  `output_layer`), so its `model_ir_se50.pth` loads strictly.
`width` scales every channel count (width 1 is the published layout; smaller widths make CPU-sized
models with the same structure). `get_backbone(name)` builds any of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IRESNET_LAYERS = {"iresnet18": [2, 2, 2, 2], "iresnet34": [3, 4, 6, 3], "iresnet50": [3, 4, 14, 3],
                  "iresnet100": [3, 13, 30, 3]}
IRSE_UNITS = {50: [3, 4, 14, 3], 100: [3, 13, 30, 3]}


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


BACKBONES = ["iresnet18", "iresnet34", "iresnet50", "iresnet100", "ir50", "ir_se50", "ir100", "ir_se100"]


def get_backbone(name: str, *, width: float = 1.0, num_features: int = 512, dropout: float = 0.0) -> nn.Module:
    """One of BACKBONES; `width` < 1 for small CPU models of the same structure."""
    if name in IRESNET_LAYERS:
        return IResNet(IRESNET_LAYERS[name], width=width, num_features=num_features, dropout=dropout)
    if name in ("ir50", "ir_se50", "ir100", "ir_se100"):
        if num_features != 512:
            raise ValueError("TreB1eN's IR/IR-SE backbones have 512-D outputs")
        return IRSE(100 if name.endswith("100") else 50, se="se" in name, width=width, dropout=dropout)
    raise ValueError(f"unknown backbone {name!r} (use one of {', '.join(BACKBONES)})")
