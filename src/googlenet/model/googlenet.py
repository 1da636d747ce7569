"""GoogLeNet (Table 1 + Figure 3) and its named variants.

`build_model("paper")` is the network of the paper exactly: the stem of Figure 3 with its two LRN
layers, nine Inception modules with 5x5 third branches, max pools that round up (112, 56, 28, 14, 7),
a 7x7 average pool, dropout 40% and a linear classifier, with the two auxiliary heads of section 5.
Every departure lives in a named variant (see `VARIANTS`) whose fields say what differs and why.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from googlenet.errors import ConfigError
from googlenet.model import table1
from googlenet.model.inception import AuxHead, Inception
from googlenet.model.layers import ConvBlock, LocalResponseNorm

# The trunk's stages in order; `forward_stages` returns any of them by name ("maxpool1" and "conv3"
# after the LRN that follows each in Figure 3).
STAGES: tuple[str, ...] = (
    "conv1", "maxpool1", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
    "inception5a", "inception5b",
)  # fmt: skip


@dataclass(frozen=True)
class ModelConfig:
    """Everything that decides the network's shape and numerics; stored with every checkpoint."""

    variant: str = "paper"
    num_classes: int = 1000
    aux_logits: bool = True
    # None: biased convolutions and no BatchNorm (paper). A float: BatchNorm with that epsilon.
    bn_eps: float | None = None
    # Figure 3: LRN after the first max pool and after conv3 (Caffe's constants, table1.LRN_*).
    lrn: bool = True
    branch3_kernel: int = 5  # Table 1 "#5x5"
    maxpool4_kernel: int = 3  # Table 1: max pool 3x3/2 before stage 5
    dropout: float = table1.MAIN_DROPOUT  # Table 1: dropout (40%)
    aux_dropout: float = table1.AUX_DROPOUT  # section 5: dropout 70%
    aux_adaptive_pool: bool = False  # section 5: average pool 5x5 stride 3
    transform_input: bool = False  # torchvision only: re-normalise ImageNet-normalised input to [-1, 1]
    init: str = "he"  # he, caffe or truncnormal: see `GoogLeNet.reset_parameters`

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


VARIANTS: dict[str, ModelConfig] = {
    # The paper: Table 1, Figure 3 and section 5, exactly.
    "paper": ModelConfig(variant="paper"),
    # BatchNorm after every convolution (Ioffe & Szegedy 2015, "BN-Inception" style): conv bias off,
    # no LRN (BatchNorm makes it redundant). Otherwise the paper's layout. Trains faster and is far
    # less sensitive to the learning rate and initialisation; not what the paper trained.
    # Initialised like torchvision (truncated normal, std 0.01), not He: with BatchNorm doing the scaling
    # the small init trains better (cifar10-mini, 64 px, 12 epochs, same loop and seed: val top-1 40.2%
    # against 28.2% with He; docs/recipe.md).
    "bn": ModelConfig(variant="bn", bn_eps=1e-5, lrn=False, init="truncnormal"),
    # torchvision.models.googlenet's layout, so its weight files load key for key: BatchNorm with
    # eps 1e-3 (ported from TF-slim), a 3x3 kernel in the "5x5" branch, a 2x2/2 max pool before
    # stage 5, dropout 0.2, no LRN, auxiliary heads pooled adaptively to 4x4.
    "torchvision": ModelConfig(
        variant="torchvision",
        bn_eps=1e-3,
        lrn=False,
        branch3_kernel=3,
        maxpool4_kernel=2,
        dropout=0.2,
        aux_adaptive_pool=True,
        init="truncnormal",
    ),
}

# The initialisations `GoogLeNet.reset_parameters` knows (the paper gives none).
INITS: tuple[str, ...] = ("he", "caffe", "truncnormal")


def is_whole(value: object, least: int | None = None) -> bool:
    """Whether `value` is an int, not a bool (which is one to Python), and at least `least` if given."""
    return isinstance(value, int) and not isinstance(value, bool) and (least is None or value >= least)


def check_config(config: ModelConfig) -> None:
    """A one-line `ConfigError` naming the first field of `config` with a wrong value or type.

    Every model is built through here (`build_model`, `build_from_config` of a checkpoint's dict), so a
    string, a float kernel size or a bool where a number belongs fails here, not deep in torch.
    """

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    if config.variant not in VARIANTS:
        raise ConfigError(f"unknown variant {config.variant!r}; choose from {', '.join(VARIANTS)}")
    if not is_whole(config.num_classes, 1):
        raise ConfigError(f"num_classes must be a whole number >= 1, got {config.num_classes!r}")
    if config.num_classes > MAX_NUM_CLASSES:
        raise ConfigError(
            f"num_classes must be at most {MAX_NUM_CLASSES:,} (ImageNet-21k has 21,841), got {config.num_classes:,}"
        )
    for name in ("dropout", "aux_dropout"):
        value = getattr(config, name)
        if not (number(value) and 0.0 <= value < 1.0):
            raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")
    for name in ("aux_logits", "lrn", "aux_adaptive_pool", "transform_input"):
        if not isinstance(getattr(config, name), bool):
            raise ConfigError(f"{name} must be True or False, got {getattr(config, name)!r}")
    if not (is_whole(config.branch3_kernel) and config.branch3_kernel in (3, 5)):  # Table 1's 5x5, or 3x3
        raise ConfigError(
            f"branch3_kernel must be 5 (Table 1) or 3 (torchvision), got {config.branch3_kernel!r}"
        )
    if not (is_whole(config.maxpool4_kernel) and config.maxpool4_kernel in (2, 3)):  # 3x3/2, or 2x2/2
        raise ConfigError(
            f"maxpool4_kernel must be 3 (Table 1) or 2 (torchvision), got {config.maxpool4_kernel!r}"
        )
    if config.bn_eps is not None and not (number(config.bn_eps) and config.bn_eps > 0):
        raise ConfigError(f"bn_eps must be None (no BatchNorm) or a positive number, got {config.bn_eps!r}")
    if config.init not in INITS:
        raise ConfigError(f"unknown init {config.init!r}; choose from {', '.join(INITS)}")


# Most classes a model is built for: its classifiers are built for real (1024 x classes weights, 400 MB
# at 100,000), and a count above the full ImageNet-21k's 21,841 read from a file is damage or a typo
# more often than a model (a 59-byte .caffemodel could ask for 38 GB).
MAX_NUM_CLASSES = 100_000
# Smallest input side: stage 5 needs a 1x1 map (32 px); the aux heads need a 4x4 map after 4a (64 px).
MIN_INPUT_SIZE = 32
MIN_INPUT_SIZE_AUX = 64
# Largest input side the CLI accepts (a limit on memory, not on the network: 4096 px is ~1 GB for conv1).
MAX_INPUT_SIZE = 4096
# Largest shorter side images are resized to before the crop: MAX_INPUT_SIZE's in the 256/224 ratio
# (`googlenet.data.transforms.default_resize_size`), the default at that size.
MAX_RESIZE_SIZE = round(MAX_INPUT_SIZE * 256 / 224)


class GoogLeNetOutputs(NamedTuple):
    """Logits of every head. `aux1` (on 4a) and `aux2` (on 4d) are None when the model has none."""

    logits: Tensor
    aux1: Tensor | None
    aux2: Tensor | None


class GoogLeNet(nn.Module):
    """GoogLeNet. `forward` returns the main logits in every mode; `forward_train` adds the auxiliary
    logits; `forward_features` gives the pooled 1024-d features; `forward_stages` named stage outputs.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        check_config(config)
        self.config = config
        eps = config.bn_eps

        def lrn() -> nn.Module:
            if not config.lrn:
                return nn.Identity()
            return LocalResponseNorm(table1.LRN_SIZE, table1.LRN_ALPHA, table1.LRN_BETA, table1.LRN_K)

        # Stem (Figure 3): conv 7x7/2 -> max pool 3x3/2 -> LRN -> conv 1x1 -> conv 3x3 -> LRN -> max pool.
        self.conv1 = ConvBlock(3, table1.STEM_CONV1, 7, stride=2, bn_eps=eps)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = lrn()
        self.conv2 = ConvBlock(table1.STEM_CONV1, table1.STEM_CONV2, 1, bn_eps=eps)
        self.conv3 = ConvBlock(table1.STEM_CONV2, table1.STEM_CONV3, 3, bn_eps=eps)
        self.lrn2 = lrn()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        ceil = config.variant == "torchvision"  # torchvision builds its branch pool with ceil_mode=True

        def inception(in_channels: int, key: str) -> Inception:
            spec = table1.INCEPTION[key]
            return Inception(in_channels, spec, eps, config.branch3_kernel, pool_ceil_mode=ceil)

        self.inception3a = inception(table1.STEM_CONV3, "3a")
        self.inception3b = inception(self.inception3a.out_channels, "3b")
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception(self.inception3b.out_channels, "4a")
        self.inception4b = inception(self.inception4a.out_channels, "4b")
        self.inception4c = inception(self.inception4b.out_channels, "4c")
        self.inception4d = inception(self.inception4c.out_channels, "4d")
        self.inception4e = inception(self.inception4d.out_channels, "4e")
        self.maxpool4 = nn.MaxPool2d(config.maxpool4_kernel, stride=2, ceil_mode=True)
        self.inception5a = inception(self.inception4e.out_channels, "5a")
        self.inception5b = inception(self.inception5a.out_channels, "5b")

        self.aux1: AuxHead | None = None
        self.aux2: AuxHead | None = None
        if config.aux_logits:

            def head(in_channels: int) -> AuxHead:
                return AuxHead(
                    in_channels,
                    config.num_classes,
                    bn_eps=eps,
                    dropout=config.aux_dropout,
                    adaptive_pool=config.aux_adaptive_pool,
                )

            # Built without drawing from the global RNG (their constructors' draws are replaced by
            # `reset_parameters` anyway), so the trunk and classifier draw the same numbers with and
            # without heads: a seed gives both the same initial weights, which ablations compare.
            with torch.random.fork_rng(devices=[]):
                self.aux1 = head(self.inception4a.out_channels)  # section 5: on the output of 4a
                self.aux2 = head(self.inception4d.out_channels)  # section 5: on the output of 4d

        # Table 1: "avg pool 7x7/1". At 224 the map is 7x7 and averaging the whole map is exactly that
        # pool; at other sizes a fixed 7x7 window would leave a spatial map (Caffe's deploy net then
        # fails at the classifier), so we average the whole map, which is what the paper's
        # "average pooling before the classifier" means.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(self.inception5b.out_channels, config.num_classes)
        self.reset_parameters()

    @property
    def num_features(self) -> int:
        """Width of `forward_features`' output (1024)."""
        return self.fc.in_features

    def reset_parameters(self) -> None:
        """Initialise the weights.

        `init="he"` (paper): He et al. 2015 normal initialisation, fan-in mode with the ReLU gain,
        for every convolution and hidden linear layer, zero biases, and N(0, 0.001) for the classifiers.
        The paper gives no initialisation. Caffe's reference uses Xavier with fan-in variance 1/n and
        bias 0.2 (`init="caffe"` below), which halves the signal's variance at every ReLU; through 22
        layers without BatchNorm the part of the features that depends on the image is tiny, the
        gradients reaching the stem are tinier, and the loss sits at ln(classes) for the first epochs
        (measured on cifar10-mini, 64 px, 12 epochs: two epochs at chance, 24.6% val top-1 at the end
        against 32.0% with He; docs/recipe.md). He's gain of 2 keeps the
        variance of the activations constant across ReLU layers, so every depth receives gradient
        from the first step. The max pools raise the mean of the activations (features have an RMS near
        3 at every depth, measured), so the classifiers start 10x smaller than the usual 0.01: the first
        softmax is then near uniform (loss ln C, tested) while every layer still receives gradient.
        Because those features share a large common component, the very first SGD steps at the
        recipe's lr 0.01 and momentum 0.9 can overshoot and kill units; the training recipe therefore
        warms the learning rate up linearly (tested: the BN-free network then learns ten real photos
        within 30 steps instead of sitting at ln 10).

        `init="caffe"`: what Caffe's bvlc_googlenet (the reference replication) starts from: its "xavier"
        filler, uniform with variance 1/fan_in, for every weight; bias 0.2 for convolutions and hidden
        linear layers, 0 for the classifiers. Kept for users reproducing that model's training.

        `init="truncnormal"` (bn, torchvision): truncated normal with std 0.01 in [-2, 2] for convolution
        and linear weights, as torchvision does; BatchNorm then does the scaling.

        Order: the trunk and the classifier first, the auxiliary heads last, so a seed gives the same
        trunk and classifier with and without heads (the `no-aux` ablation and `--grad-norms-every`
        compare such pairs).
        """
        heads = [head for head in (self.aux1, self.aux2) if head is not None]
        classifiers = {self.fc, *(head.fc2 for head in heads)}
        in_heads = {id(module) for head in heads for module in head.modules()}
        trunk = [module for module in self.modules() if id(module) not in in_heads]
        for module in trunk + [module for head in heads for module in head.modules()]:
            if isinstance(module, nn.Conv2d | nn.Linear):
                self._init_layer(module, classifier=module in classifiers)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _init_layer(self, module: nn.Conv2d | nn.Linear, classifier: bool) -> None:
        """One convolution or linear layer as `reset_parameters` says; `classifier`: a final layer."""
        if self.config.init == "truncnormal":
            nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-2, b=2)
        elif self.config.init == "he":
            if classifier:
                nn.init.normal_(module.weight, std=0.001)
            else:
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        elif self.config.init == "caffe":
            # Caffe's "xavier" filler: uniform with variance 1/fan_in (its default FAN_IN);
            # fan_in is one output unit's weight count (in_channels x kernel area).
            bound = (3.0 / module.weight[0].numel()) ** 0.5
            nn.init.uniform_(module.weight, -bound, bound)
        else:
            raise ConfigError(f"unknown init {self.config.init!r}; choose from {', '.join(INITS)}")
        if module.bias is not None:
            nn.init.constant_(module.bias, 0.2 if self.config.init == "caffe" and not classifier else 0.0)

    def _transform_input(self, x: Tensor) -> Tensor:
        # torchvision: weights ported from TF expect inputs in [-1, 1]; undo ImageNet normalisation.
        # Per channel with Python numbers, as torchvision writes it: a tensor of them would be recorded
        # by a TorchScript trace with the exporting device and dtype.
        channels = [
            x[:, c : c + 1] * (std / 0.5) + (mean - 0.5) / 0.5
            for c, (mean, std) in enumerate(((0.485, 0.229), (0.456, 0.224), (0.406, 0.225)))
        ]
        return torch.cat(channels, dim=1)

    def _check_input(self, x: Tensor, with_aux: bool = False) -> None:
        # Cheap checks only (no look at the values): a numpy array, or read_image's uint8 pixels, would
        # otherwise fail deep in the first convolution with a message about neither.
        wanted = "expected a normalised floating-point N x 3 x H x W tensor"
        if not isinstance(x, Tensor):
            module, name = type(x).__module__, type(x).__name__
            raise TypeError(f"{wanted}, got a {name if module == 'builtins' else f'{module}.{name}'}")
        if not x.is_floating_point():
            raise ValueError(f"{wanted}, got {x.dtype} (raw pixels: scale to [0, 1] and normalise first)")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W image batch, got shape {tuple(x.shape)}")
        minimum = MIN_INPUT_SIZE_AUX if with_aux and self.aux1 is not None else MIN_INPUT_SIZE
        if min(x.shape[-2:]) < minimum:
            raise ValueError(f"input must be at least {minimum}x{minimum}, got {tuple(x.shape[-2:])}")

    def _stem(self, x: Tensor) -> Tensor:
        if self.config.transform_input:
            x = self._transform_input(x)
        x = self.conv1(x)  # N x 64 x 112 x 112
        x = self.maxpool1(x)  # N x 64 x 56 x 56
        x = self.lrn1(x)
        x = self.conv2(x)  # N x 64 x 56 x 56
        x = self.conv3(x)  # N x 192 x 56 x 56
        x = self.lrn2(x)
        return self.maxpool2(x)  # N x 192 x 28 x 28

    def _trunk(self, x: Tensor, with_aux: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        self._check_input(x, with_aux)
        x = self._stem(x)  # N x 192 x 28 x 28
        x = self.inception3a(x)  # N x 256 x 28 x 28
        x = self.inception3b(x)  # N x 480 x 28 x 28
        x = self.maxpool3(x)  # N x 480 x 14 x 14
        x = self.inception4a(x)  # N x 512 x 14 x 14
        aux1 = self.aux1(x) if with_aux and self.aux1 is not None else None
        x = self.inception4b(x)  # N x 512 x 14 x 14
        x = self.inception4c(x)  # N x 512 x 14 x 14
        x = self.inception4d(x)  # N x 528 x 14 x 14
        aux2 = self.aux2(x) if with_aux and self.aux2 is not None else None
        x = self.inception4e(x)  # N x 832 x 14 x 14
        x = self.maxpool4(x)  # N x 832 x 7 x 7
        x = self.inception5a(x)  # N x 832 x 7 x 7
        x = self.inception5b(x)  # N x 1024 x 7 x 7
        x = self.avgpool(x)  # N x 1024 x 1 x 1
        return torch.flatten(x, 1), aux1, aux2  # N x 1024

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features before dropout and the classifier: N x 1024."""
        return self._trunk(x, with_aux=False)[0]

    def forward_head(self, features: Tensor) -> Tensor:
        """Dropout and the classifier on pooled features: N x num_classes."""
        return self.fc(self.dropout(features))

    def forward(self, x: Tensor) -> Tensor:
        """Main logits, N x num_classes, in training and evaluation mode alike.

        `x` is a normalised floating-point N x 3 x H x W tensor (as every forward takes): anything else,
        such as `torchvision.io.read_image`'s uint8 pixels or a numpy array, is a one-line ValueError or
        TypeError that says so.
        """
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: Tensor) -> GoogLeNetOutputs:
        """Main and auxiliary logits (section 5), whatever the mode; aux fields are None without heads."""
        features, aux1, aux2 = self._trunk(x, with_aux=True)
        return GoogLeNetOutputs(self.forward_head(features), aux1, aux2)

    def forward_stages(
        self, x: Tensor, stages: Iterable[str] | str | None = None
    ) -> OrderedDict[str, Tensor]:
        """Outputs of the named trunk stages (`STAGES`), in order; all of them by default (one name
        may be given as a string).

        Each stage's output is what the next stage reads: with LRN (Figure 3) "maxpool1" is max pool 1
        followed by the first LRN, and "conv3" is conv2 then conv3 followed by the second LRN (conv2, the
        1x1 reduction, has no stage of its own). Without LRN they are the pool's and conv3's outputs.

        Stops after the deepest stage asked for, so `forward_stages(x, ["inception4e"])` skips stage 5.
        """
        wanted = list(STAGES) if stages is None else [stages] if isinstance(stages, str) else list(stages)
        unknown = [name for name in wanted if name not in STAGES]
        if unknown or not wanted:
            what = f"unknown stage(s) {unknown}" if unknown else "no stage named"
            raise ValueError(f"{what}; choose from {', '.join(STAGES)}")
        self._check_input(x)
        if self.config.transform_input:
            x = self._transform_input(x)
        last = max(STAGES.index(name) for name in wanted)
        out: OrderedDict[str, Tensor] = OrderedDict()
        steps: list[tuple[str, list[nn.Module]]] = [
            ("conv1", [self.conv1]),
            ("maxpool1", [self.maxpool1, self.lrn1]),
            ("conv3", [self.conv2, self.conv3, self.lrn2]),
            ("maxpool2", [self.maxpool2]),
        ]
        steps += [(name, [self.get_submodule(name)]) for name in STAGES[4:]]
        for index, (name, modules) in enumerate(steps):
            for module in modules:
                x = module(x)
            if name in wanted:
                out[name] = x
            if index == last:
                break
        return out

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the main and auxiliary classifiers for `num_classes` classes (fine-tuning).

        Each new layer has its old one's dtype and device, and starts as `reset_parameters` starts the
        model's classifiers (`init="he"`, the paper variant's: N(0, 0.001); "truncnormal", `bn` and
        `torchvision`'s: truncated normal, std 0.01; "caffe": Xavier), bias 0. Also the way back to a
        consistent model after a classifier was replaced by hand (`model.fc = ...`).
        """
        if not is_whole(num_classes, 1):
            raise ConfigError(f"num_classes must be a whole number >= 1, got {num_classes!r}")

        def new(old: nn.Module, in_features: int) -> nn.Linear:
            # the old layer's dtype and device (the trunk's, if a hand-made one holds no parameters)
            like = next(itertools.chain(old.parameters(), self.inception5b.parameters()))
            layer = nn.Linear(in_features, num_classes, device=like.device, dtype=like.dtype)
            self._init_layer(layer, classifier=True)
            return layer

        self.fc = new(self.fc, self.inception5b.out_channels)
        for head in (self.aux1, self.aux2):
            if head is not None:
                head.fc2 = new(head.fc2, table1.AUX_FC)
        self.config = replace(self.config, num_classes=num_classes)


def build_model(
    variant: str = "paper",
    num_classes: int = 1000,
    aux_logits: bool = True,
    **overrides: Any,
) -> GoogLeNet:
    """Build a GoogLeNet.

    Args:
        variant: "paper" (Table 1 + Figure 3 exactly), "bn" (BatchNorm after every convolution, no LRN)
            or "torchvision" (torchvision.models.googlenet's layout); see `VARIANTS`.
        num_classes: width of every classifier.
        aux_logits: build the two auxiliary heads of section 5. False builds none at all.
        overrides: any other `ModelConfig` field, e.g. `dropout=0.5` or `transform_input=True`.

    Example:
        >>> import torch, googlenet
        >>> model = googlenet.build_model("paper", num_classes=10).eval()
        >>> model(torch.zeros(2, 3, 224, 224)).shape
        torch.Size([2, 10])
        >>> out = model.forward_train(torch.zeros(2, 3, 224, 224))
        >>> out.aux1.shape, out.aux2.shape
        (torch.Size([2, 10]), torch.Size([2, 10]))
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    known = set(ModelConfig.__dataclass_fields__) - {"variant", "num_classes", "aux_logits"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown model option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    config = replace(VARIANTS[variant], num_classes=num_classes, aux_logits=aux_logits, **overrides)
    return GoogLeNet(config)


def build_from_config(config: ModelConfig | dict[str, Any]) -> GoogLeNet:
    """Rebuild a model from a stored `ModelConfig` (or its dict form, as checkpoints keep it); every
    field is checked as `build_model` checks it (`check_config`)."""
    if isinstance(config, dict):
        known = set(ModelConfig.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(f"unknown model config key(s): {', '.join(unknown)}")
        config = ModelConfig(**config)
    return GoogLeNet(config)
