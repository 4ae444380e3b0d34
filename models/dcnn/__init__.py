"""DCNN matting (seed 004): a six-convolution network that merges closed-form and KNN mattes.

network.py: DCNNConfig, DCNNNet (x (B, 5, H, W) -> pha (B, 1, H, W)); model.py: DCNN, the server model.
"""
