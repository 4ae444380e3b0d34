"""Configuration of the lightweight trimap-free matting network (seed 003)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LightweightConfig:
    """Widths and depths of the two stages. The defaults are the paper's size (about 345 k parameters).

    sn_stem: channels of the segmentation network's stride-2 stem convolution
    sn_widths: channels of the segmentation encoder levels En1-1..En1-4 (strides 4, 8, 16, 32)
    sn_depths: OCBlocks per segmentation encoder level (the paper's 3, 4, 6, 4)
    sn_decoder: channels of the segmentation decoders De1-4, De1-3, De1-2 (strides 32, 16, 8)
    cfm_reduction: channel-attention bottleneck ratio in the cross-level fusion module
    mrn_widths: channels of the refine encoder levels En2-1..En2-4 (strides 2, 4, 8, 16)
    mrn_depth: OCBlocks per refine encoder level (the paper's 2)
    mrn_decoder: channels of the refine decoders De2-4..De2-1 (strides 16, 8, 4, 2)
    image_widths: channels of the OCBlocks that turn the image into attention keys/values (strides 2, 4, 8)
    attention: channels of the attention embeddings (query, key, value)
    interval: long-range sampling interval sqrt(k) of the attention (the paper's 4)
    window: short-range window side sqrt(k) of the attention (the paper's k = 16, so 4)
    octave: fraction of each OCBlock's channels kept at half resolution (OctConv's alpha)
    octave_stream: False: each OCBlock splits its input into high and low frequencies and merges them
        back (one map between blocks); True: the low-frequency part runs from block to block as in
        octave convolution proper (octconv.OctaveBlock). The two readings of the paper, see
        models/lightweight/__init__.py; `lightweight` is the first, `lightweight_octave` the second.
    """

    sn_stem: int = 12
    sn_widths: tuple[int, int, int, int] = (16, 32, 80, 128)
    sn_depths: tuple[int, int, int, int] = (3, 4, 6, 4)
    sn_decoder: tuple[int, int, int] = (96, 64, 32)
    cfm_reduction: int = 4
    mrn_widths: tuple[int, int, int, int] = (12, 24, 32, 80)
    mrn_depth: int = 2
    mrn_decoder: tuple[int, int, int, int] = (64, 32, 24, 8)
    image_widths: tuple[int, int, int] = (8, 16, 32)
    attention: int = 16
    interval: int = 4
    window: int = 4
    octave: float = 0.5
    octave_stream: bool = False
