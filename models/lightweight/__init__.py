"""Seed 003, "Highly Efficient Natural Image Matting": a trimap-free two-stage network of ~344 k parameters.

    x: (B, 3, H, W) RGB in 0..1, any H and W
    -> SN (segmentation network): 3-class logits T (background, foreground, unknown) at stride 8
    -> MRN (matting refine network) on concat(image, softmax(T)): refined alpha pha_refine in 0..1
    -> pha = P_fg + P_unk * pha_refine: (B, 1, H, W) in 0..1 (paper eq. 5)

Files: octconv.py (OCBlock), cfm.py (cross-level fusion), attention.py (ENA), decoder.py, segmentation.py
(SN), refine.py (MRN), net.py (composition root, padding, `forward_train`), config.py, model.py (registry).

Size: 343,785 parameters (paper 344.8 k; octave stream 343,881) and 0.867 GFLOPs (octave stream
0.722: its low parts stay at half resolution through the 1x1 layers too) for a 512x512 frame as
torch.utils.flop_counter.FlopCounterMode counts it (2 FLOPs per multiply-add, convolutions and the
attention's matrix products; batch norm, pooling, resizing and softmax are not counted), i.e. 0.434 G
multiply-adds. The paper does not say how it counts. Its Table 1 gives DIM 130.55 M parameters and
443.56 G: DIM rebuilt (VGG-16 with its 7x7 fc6 convolution, 4-channel input, DIM's 5x5 decoder) has
130.54 M parameters and 442.9 G multiply-adds at 800x800, the resolution the paper computes its metrics
at (181.4 G multiply-adds = 362.8 GFLOPs at 512x512 match nothing). So the table counts multiply-adds
(thop style) at 800x800; read that way the paper's 0.93 G is 0.38 G multiply-adds = 0.76 GFLOPs of our
counter at 512x512. Read as FLOPs at 512x512 it is 0.93; read as multiply-adds at 512x512 it would be
1.86 GFLOPs, which no network within our 1.0 GFLOPs limit can match. 0.867 sits between the two readings
that the limit allows.

Choices the paper leaves open (its OCBlock paragraph and figures are not in the text we have):

- OCBlock (octconv.py), two readings. The paper says its block "combines the advantages of depthwise
  convolutions and OctConv" (Fig. 2b, not in our text) and never says whether the low-frequency
  features leave the block.
  (a) Block-local octave (`lightweight`, LightweightConfig.octave_stream = False): 1x1 octave
      convolution from one input into a high part (full resolution) and a low part (2x2 average
      pooled, half the channels: OctConv alpha = 0.5), a 3x3 depthwise convolution on each part (no
      cross-frequency paths, as OctConv does for depthwise layers), a 1x1 octave convolution merging
      both parts back into one map (the low part nearest-upsampled), BN after every convolution, ReLU,
      identity residual when input and output shapes agree. Stride 2 = 2x2 average pooling first. The
      block is a drop-in for a ResNet block, which fits "stacking OCBlocks like ResNet-50".
  (b) Octave stream (`lightweight_octave`, octave_stream = True): octave convolution proper
      (../shared/docs/MODELS.md): blocks take and return (high, low), both 1x1 layers have all four
      paths (HH, LH, LL, HL), so the half-resolution features run from block to block and are never
      merged inside one. The rest of the network (stem, CFM, ENA, heads) keeps its one-map interface:
      between modules the pair travels packed (high channels, then the low ones nearest-upsampled),
      which loses nothing; a decoder concatenates per part. Where the input is an image (MRN's
      src + T, the image branch), the first block sees it whole at both resolutions (OctConv's first
      layer). Same widths, same parameters up to 96 (those two first blocks).
  Which one is better was decided by training both from scratch on the same budget (alphamatting
  train photos + Composition-1k objects, 400 steps, batch 4, 256 px crops, seed 0, 2-thread AMD EPYC
  CPU, about 13-14 minutes each) and scoring them on `mattebox eval --suite` (20 held-out composites):
  (a) SAD 42.69, MSE 0.2426 (training validation best 12.94 at step 200);
  (b) SAD 38.89, MSE 0.2418 (best 11.71 at step 400; 0.72 GFLOPs at 512x512 against 0.87).
  The octave stream wins: the half-resolution features carry context from block to block instead of
  being folded back into full resolution each time. It ships as `lightweight_octave`; `lightweight`
  keeps (a) with its 1,500-step weights (suite SAD 33.74, alphamatting photos only), which are still
  the best trimap-free weights: (b) trained 1,100 steps further from its 400-step weights scored
  40.21 on the suite, so it fitted the Composition-1k crops rather than learning more.
- Widths (the paper gives none) are in LightweightConfig, chosen to land on the paper's parameter count:
  SN stem 12 (3x3 stride-2 conv), En1-1..4 = 16, 32, 80, 128 at strides 4, 8, 16, 32 (ResNet-50's layout,
  3/4/6/4 blocks); De1-4..2 = 96, 64, 32. MRN En2-1..4 = 12, 24, 32, 80 at strides 2, 4, 8, 16 (2 blocks
  each); De2-4..1 = 64, 32, 24, 8; image branch 8, 16, 32 (one stride-2 OCBlock each).
- CFM (cfm.py): squeeze-and-excitation channel attention on En1-4 (global average, 1x1 conv to C/4, ReLU,
  1x1 conv, sigmoid), 1x1 conv + BN + ReLU to En1-2's width, bilinear upsampling, added to En1-2.
- Decoders (decoder.py): one OCBlock on concat(encoder skip, bilinearly upsampled deeper decoder);
  the deepest decoder (De1-4, De2-4) is one OCBlock on the deepest encoder feature alone.
- SN logits: a 3x3 convolution (with bias) on each of De1-4, De1-3, De1-2 (multi-level supervision,
  eq. 7); T is De1-2's. Channel order = eq. 6's labels: 0 background, 1 foreground, 2 unknown.
  `forward_train` returns them bilinearly upsampled to the input size, deepest first.
- SN -> MRN: softmax probabilities of T, bilinearly upsampled to full resolution, not logits or a hard
  argmax, so the two stages train jointly (the paper trains end to end). U = P_unk, F = P_fg, both soft,
  also at inference (deterministic, and pha stays in 0..1 without clamping).
- ENA (attention.py): placed at stride 8, once on En2-3 (its output feeds En2-4 and the skip) and once
  on De2-3 ("symmetrically"); keys/values from a 3-OCBlock image branch shared by both. Queries, keys and
  values are 1x1-conv embeddings with 16 channels; the query input is feat * U with U = P_unk average
  pooled to stride 8; similarity softmax(q k^T / sqrt(16)); long-range subsets = positions sharing
  (row mod 4, col mod 4) (sqrt(k) = 4), short-range windows = 4x4 neighbours (k = 16), the short-range
  query being the long-range output; fusion = feat + BN(conv1x1(A_L)).
- MRN head: a 3x3 convolution on concat(upsampled De2-1, image) at full resolution, then a sigmoid.
- Any input size: replicate padding on the right and bottom to a multiple of 64 (SN's stride 32 times the
  octave's half resolution; also a multiple of 8 * 4 for the attention groups), cropped back.
"""
from models.lightweight.config import LightweightConfig
from models.lightweight.model import Lightweight, LightweightOctave
from models.lightweight.net import LightweightNet

__all__ = ["Lightweight", "LightweightConfig", "LightweightNet", "LightweightOctave"]
