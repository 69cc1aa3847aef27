"""Datasets and loaders: embedded digits, local CIFAR, ImageNet-style folders; their three splits; batches made
on the training device. ``datasets`` builds a ``DataBundle``, ``loaders`` serves it, ``tensors`` holds in-memory
images."""
