"""Readers for foreign weight files (torch.save, NVIDIA's TF StyleGAN pickles) that never run
code from the file: pickles go through an allow-list unpickler, tensors come back as numpy.
Nor can a file make them allocate much more than its own size: sizes the file's bytes cannot
back are refused before allocating (``weights_convert.readers.limits``)."""

from weights_convert.readers.errors import UnsafePickleError, WeightFileError
from weights_convert.readers.tf_pickle import TFNetwork, read_tf_network_pickle
from weights_convert.readers.torch_files import read_torch_file

__all__ = [
    "TFNetwork",
    "UnsafePickleError",
    "WeightFileError",
    "read_tf_network_pickle",
    "read_torch_file",
]
