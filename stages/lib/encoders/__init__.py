"""Pretrained encoders: offline-first loading and the attention kernels they run with."""
