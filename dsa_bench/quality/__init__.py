"""Indexer quality: train a lightning indexer with the report's KL objective on a synthetic (or captured)
main attention, and measure attention recall / top-k overlap / output error per k against baselines.

config.py is torch-free; the other modules import torch. Entry points: config.QualityConfig,
train.run_quality, plot.plot_quality.
"""
