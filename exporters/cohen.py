"""The models of Cohen, Rosenberg & Kolter (2019), "Certified Adversarial Robustness via Randomized
Smoothing", which Kumar et al. (2020) certify: CIFAR-10 ResNet-110 and ImageNet ResNet-50.

Their code (github.com/locuslab/smoothing, ``code/architectures.py``) builds every classifier as
``torch.nn.Sequential(NormalizeLayer(mean, sds), net)`` and saves
``{'arch': ..., 'state_dict': ..., ...}``; the state_dict keys therefore start with ``1.``
(``1.module.`` for the ImageNet model, which they wrapped in DataParallel). The architectures
below reproduce theirs module for module, so those checkpoints load key for key:

- ``cifar_resnet110`` / ``cifar_resnet20``: the CIFAR ResNet of ``code/archs/cifar_resnet.py``
  (from bearpaw/pytorch-classification), BasicBlock, depth 6n + 2, 10 classes.
- ``resnet50``: torchvision's ResNet-50 (Bottleneck with the stride on the 3x3 convolution),
  written out here so that torchvision is not needed.

Normalization constants are those of Cohen et al.'s ``code/datasets.py``. For CIFAR-10 these are
mean (0.4914, 0.4822, 0.4465) and std (0.2023, 0.1994, 0.2010), the values their models were
trained with (not the data set's per-pixel std, about (0.247, 0.243, 0.261)).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .checkpoint import extract_state_dict, load_checkpoint, load_weights, sha256, strip_common_prefixes
from .errors import CheckpointError, ExportError
from .onnx_export import ExportResult, NormalizeLayer, export_model

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Dataset:
    """How Cohen et al. fed a data set to the network: the onnxcert preprocess section."""

    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: int
    resize: str
    resize_to: int | None
    crop: str
    classes: tuple[str, ...] | None


DATASETS = {
    # test transform: ToTensor() on the 32x32 images
    "cifar10": Dataset("cifar10", (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 32,
                       "exact", None, "none", CIFAR10_CLASSES),
    # test transform: Scale(256), CenterCrop(224), ToTensor()
    "imagenet": Dataset("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224,
                        "shorter", 256, "center", None),
}


# ---------------------------------------------------------------- CIFAR ResNet (BasicBlock)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _make_layer(block, inplanes: int, planes: int, blocks: int, stride: int) -> tuple[nn.Sequential, int]:
    """A ResNet stage as in torchvision and Cohen et al.: the first block downsamples (1x1 conv +
    BN) when the stride or width changes. Returns the stage and its output width."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion))
    layers = [block(inplanes, planes, stride, downsample)]
    width = planes * block.expansion
    layers += [block(width, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers), width


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: 16-32-64 channels, n = (depth - 2) / 6 BasicBlocks per stage."""

    def __init__(self, depth: int = 110, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ExportError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}")
        blocks = (depth - 2) // 6
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, blocks)
        self.layer2 = self._make_layer(32, blocks, stride=2)
        self.layer3 = self._make_layer(64, blocks, stride=2)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64 * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layer, self.inplanes = _make_layer(BasicBlock, self.inplanes, planes, blocks, stride)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)
        return self.fc(x.view(x.size(0), -1))


# ---------------------------------------------------------------- ImageNet ResNet-50 (torchvision layout)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """torchvision's ``resnet50``: module names and shapes match its state_dict key for key."""

    def __init__(self, num_classes: int = 1000, layers: tuple[int, ...] = (3, 4, 6, 3)):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layer, self.inplanes = _make_layer(Bottleneck, self.inplanes, planes, blocks, stride)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------- Cohen et al.'s registry


ARCHITECTURES: dict[str, tuple[str, Callable[[], nn.Module]]] = {
    "cifar_resnet20": ("cifar10", lambda: CifarResNet(20, 10)),
    "cifar_resnet110": ("cifar10", lambda: CifarResNet(110, 10)),
    "resnet50": ("imagenet", lambda: ResNet50(1000)),
}


def get_architecture(arch: str) -> nn.Sequential:
    """``Sequential(NormalizeLayer, net)`` with random weights, as Cohen et al.'s ``get_architecture``."""
    if arch not in ARCHITECTURES:
        raise ExportError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    dataset, factory = ARCHITECTURES[arch]
    ds = DATASETS[dataset]
    return nn.Sequential(NormalizeLayer(ds.mean, ds.std), factory())


def load_cohen_checkpoint(path: str | Path, arch: str | None = None) -> tuple[str, nn.Sequential]:
    """(arch, ``Sequential(NormalizeLayer, net)`` with the checkpoint's weights), in eval mode.

    Accepts Cohen et al.'s ``{'arch', 'state_dict', ...}`` (keys ``1.*`` or ``1.module.*``), or
    a bare state_dict of the network alone (then ``arch`` is required).
    """
    obj = load_checkpoint(path)
    stored = obj.get("arch") if isinstance(obj, dict) else None
    if arch is not None and stored is not None and arch != stored:
        raise CheckpointError(f"checkpoint {str(path)!r} says arch {stored!r}, but {arch!r} was requested")
    arch = arch or stored
    if arch is None:
        raise CheckpointError(f"checkpoint {str(path)!r} names no 'arch'; pass one of {', '.join(ARCHITECTURES)}")
    model = get_architecture(str(arch))
    load_weights(model[1], _network_keys(extract_state_dict(obj), model[0]))
    return str(arch), model.eval()


def export_cohen(
    checkpoint: str | Path,
    output: str | Path,
    *,
    arch: str | None = None,
    sigma: float | None = None,
    fold_normalization: bool = True,
    **export_options: Any,
) -> ExportResult:
    """Export one of Cohen et al.'s checkpoints with its preprocessing, classes and training sigma.

    With ``fold_normalization`` (the default) the graph is their whole classifier, NormalizeLayer
    included, and takes images in [0, 1]; without it the graph is the bare network and the
    metadata carries the mean and std. ``sigma`` defaults to the ``noise_S`` directory of their
    published layout (``models/cifar10/resnet110/noise_0.25/checkpoint.pth.tar``).
    """
    arch, model = load_cohen_checkpoint(checkpoint, arch)
    if sigma is None:
        sigma = sigma_from_path(checkpoint)
    ds = DATASETS[ARCHITECTURES[arch][0]]
    provenance = {"source": f"Cohen et al. 2019 {arch}",
                  "checkpoint": {"file": Path(checkpoint).name, "sha256": sha256(checkpoint)}}
    return export_model(model[1], output, input_shape=(3, ds.size, ds.size), channels="RGB",
                        mean=ds.mean, std=ds.std, resize=ds.resize, resize_to=ds.resize_to, crop=ds.crop,
                        classes=ds.classes, output_kind="logits", sigma=sigma,
                        fold_normalization=fold_normalization, provenance=provenance, **export_options)


def sigma_from_path(path: str | Path) -> float | None:
    """0.25 from ``.../noise_0.25/checkpoint.pth.tar``; None when no such directory is named."""
    for part in reversed(Path(path).parts):
        m = re.fullmatch(r"noise_(\d+(?:\.\d+)?)", part)
        if m and float(m.group(1)) > 0:
            return float(m.group(1))
    return None


def _network_keys(state: dict[str, torch.Tensor], normalize: NormalizeLayer) -> dict[str, torch.Tensor]:
    """Keys of the bare network: drop ``module.`` (DataParallel), then the Sequential's ``1.``.

    Cohen et al.'s NormalizeLayer stores nothing; a checkpoint that does store ``0.*`` constants
    must agree with ours, since the graph uses ours.
    """
    state = strip_common_prefixes(state)
    for key in [k for k in state if k.startswith("0.")]:
        stored, ours = state.pop(key).float().flatten(), getattr(normalize, key[2:], None)
        if ours is None or stored.numel() != ours.numel() or not torch.allclose(stored, ours.flatten()):
            expected = {n: b.flatten().tolist() for n, b in normalize.named_buffers()}
            raise CheckpointError(f"checkpoint entry {key!r} = {stored.tolist()} does not match "
                                  f"Cohen et al.'s normalization {expected}")
    if all(k.startswith("1.") for k in state):
        state = {k[2:]: v for k, v in state.items()}
    return strip_common_prefixes(state)
