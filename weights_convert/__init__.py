"""Readers for foreign weight files (torch.save, NVIDIA's TF StyleGAN pickles) that never run
code from the file: pickles go through an allow-list unpickler, tensors come back as numpy.
Nor can a file make them allocate much more than its own size: sizes the file's bytes cannot
back are refused before allocating (``weights_convert.limits``)."""

from weights_convert.errors import UnsafePickleError, WeightFileError
from weights_convert.tf_pickle import TFNetwork, read_tf_network_pickle
from weights_convert.torch_files import read_torch_file

__all__ = [
    "TFNetwork",
    "UnsafePickleError",
    "WeightFileError",
    "read_tf_network_pickle",
    "read_torch_file",
]
