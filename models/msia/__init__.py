"""MSIA-matte: multi-scale information assembly for trimap-free image matting (registry name "msia").

resnext.py   ResNeXt backbone and its configuration      traces.py   superficial-traces branch
aspp.py      atrous spatial pyramid pooling              assembly.py adaptive information assembly
decoder.py   fusion, upsampling and alpha head            config.py   network configuration, presets
conv.py      convolution + batch norm + ReLU              model.py    composition root, `MSIA` model
"""
