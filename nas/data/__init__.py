"""Datasets and loaders: embedded digits, local CIFAR, ImageNet-style folders; their three splits; batches made
on the training device. ``datasets`` builds a ``DataBundle``, ``folders`` lists, checks and decodes image folders,
``loaders`` serves a bundle, ``tensors`` holds in-memory images."""
