"""Table 1 of Szegedy et al. 2014 as data: the single source the network, the summary and the tests read.

Each Inception row lists the six branch widths in the paper's column order
(`n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_proj`). The printed "params" and "ops" columns are kept
verbatim so `googlenet summary` can show them beside the values computed from the model itself; the
paper's table is not exactly self-consistent (conv1 and 5a ops, several params rows; FACTS.md s.1) and
we show the difference instead of hiding it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InceptionSpec:
    """The six widths of one Inception module (Table 1 columns, Figure 2b branches)."""

    n1x1: int
    n3x3red: int
    n3x3: int
    n5x5red: int
    n5x5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        """Channels of the concatenated output: the four branch outputs."""
        return self.n1x1 + self.n3x3 + self.n5x5 + self.pool_proj


# Table 1, in order. Keys are the paper's names without the space ("inception 3a" -> "3a").
INCEPTION: dict[str, InceptionSpec] = {
    "3a": InceptionSpec(64, 96, 128, 16, 32, 32),
    "3b": InceptionSpec(128, 128, 192, 32, 96, 64),
    "4a": InceptionSpec(192, 96, 208, 16, 48, 64),
    "4b": InceptionSpec(160, 112, 224, 24, 64, 64),
    "4c": InceptionSpec(128, 128, 256, 24, 64, 64),
    "4d": InceptionSpec(112, 144, 288, 32, 64, 64),
    "4e": InceptionSpec(256, 160, 320, 32, 128, 128),
    "5a": InceptionSpec(256, 160, 320, 32, 128, 128),
    "5b": InceptionSpec(384, 192, 384, 48, 128, 128),
}


@dataclass(frozen=True)
class PaperRow:
    """One printed row of Table 1: type, patch size/stride, output size, depth, params, ops."""

    name: str  # our module name (state_dict prefix), or "" for parameter-free rows
    type: str
    patch: str
    output: tuple[int, int, int]  # H, W, C at 224x224 input
    depth: int
    params: str  # as printed ("2.7K", "1072K"), "" where the paper prints nothing
    ops: str  # as printed ("34M"), "" where the paper prints nothing


# The rows exactly as printed. "conv 3x3/1" stands for the 1x1 reduce + 3x3 pair (depth 2).
PAPER_NUM_CLASSES = 1000  # ILSVRC 2014 classification: the classifier rows below are 1000-way

PAPER_ROWS: tuple[PaperRow, ...] = (
    PaperRow("conv1", "convolution", "7x7/2", (112, 112, 64), 1, "2.7K", "34M"),
    PaperRow("maxpool1", "max pool", "3x3/2", (56, 56, 64), 0, "", ""),
    PaperRow("conv2+conv3", "convolution", "3x3/1", (56, 56, 192), 2, "112K", "360M"),
    PaperRow("maxpool2", "max pool", "3x3/2", (28, 28, 192), 0, "", ""),
    PaperRow("inception3a", "inception (3a)", "", (28, 28, 256), 2, "159K", "128M"),
    PaperRow("inception3b", "inception (3b)", "", (28, 28, 480), 2, "380K", "304M"),
    PaperRow("maxpool3", "max pool", "3x3/2", (14, 14, 480), 0, "", ""),
    PaperRow("inception4a", "inception (4a)", "", (14, 14, 512), 2, "364K", "73M"),
    PaperRow("inception4b", "inception (4b)", "", (14, 14, 512), 2, "437K", "88M"),
    PaperRow("inception4c", "inception (4c)", "", (14, 14, 512), 2, "463K", "100M"),
    PaperRow("inception4d", "inception (4d)", "", (14, 14, 528), 2, "580K", "119M"),
    PaperRow("inception4e", "inception (4e)", "", (14, 14, 832), 2, "840K", "170M"),
    PaperRow("maxpool4", "max pool", "3x3/2", (7, 7, 832), 0, "", ""),
    PaperRow("inception5a", "inception (5a)", "", (7, 7, 832), 2, "1072K", "54M"),
    PaperRow("inception5b", "inception (5b)", "", (7, 7, 1024), 2, "1388K", "71M"),
    PaperRow("avgpool", "avg pool", "7x7/1", (1, 1, 1024), 0, "", ""),
    PaperRow("dropout", "dropout (40%)", "", (1, 1, 1024), 0, "", ""),
    PaperRow("fc", "linear", "", (1, 1, 1000), 1, "1000K", "1M"),
    PaperRow("softmax", "softmax", "", (1, 1, 1000), 0, "", ""),
)

# Stem widths (Table 1): conv1 7x7/2 -> 64; conv2 1x1 reduce -> 64; conv3 3x3 -> 192.
STEM_CONV1 = 64
STEM_CONV2 = 64
STEM_CONV3 = 192

# Section 5: auxiliary heads on the outputs of 4a and 4d.
AUX_POOL_KERNEL = 5  # average pool 5x5 stride 3 -> 4x4 at 224 input
AUX_POOL_STRIDE = 3
AUX_POOL_OUTPUT = 4
AUX_CONV = 128  # 1x1 convolution with 128 filters
AUX_FC = 1024  # fully connected layer with 1024 units
AUX_DROPOUT = 0.7  # dropout ratio 70%
AUX_LOSS_WEIGHT = 0.3  # total loss = main + 0.3 x (aux1 + aux2)
MAIN_DROPOUT = 0.4  # Table 1: dropout (40%)

# Figure 3 shows LRN after the first max pool and after conv3; the paper gives no constants.
# These are the reference Caffe model's (bvlc_googlenet): local_size 5, alpha 1e-4, beta 0.75.
LRN_SIZE = 5
LRN_ALPHA = 1e-4
LRN_BETA = 0.75
LRN_K = 1.0


def parse_printed(value: str) -> float | None:
    """Turn a printed Table 1 figure ("2.7K", "34M") into a number; "" gives None."""
    if not value:
        return None
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}[value[-1]]
    return float(value[:-1]) * scale
