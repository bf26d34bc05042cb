"""What every name table shares: `Entry` (source tensor name -> pulse-jax parameter path and
layout change) and `apply_table`.

Every table must cover every tensor of its source: a name the table does not list, or a listed
name the file lacks, is an error that names them all (`apply_table`). Tensors that are
deliberately not used are listed with `IGNORE` and the reason. The tables themselves: one
module per family (stylegan1, dcgan, stylegan2, stylegan3; rosinality renames into stylegan2's),
listed in `registry`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import numpy as np

from weights_convert.readers.errors import name_mismatch


def _blur_kernel_ok(a: np.ndarray) -> None:
  k = np.array([1.0, 2.0, 1.0])
  expected = (k[:, None] * k[None, :] / 16.0).reshape(1, 1, 3, 3)
  if a.shape != expected.shape or not np.allclose(a, expected, atol=1e-6):
    raise ValueError(f"blur kernel buffer is not the [1,2,1] x [1,2,1] / 16 filter StyleGAN uses: {a}")


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "copy": lambda a: a,
    # torch conv weight [O, I, kh, kw] -> HWIO.
    "oihw_to_hwio": lambda a: a.transpose(2, 3, 1, 0),
    # torch Linear weight [out, in] -> [in, out].
    "transpose": lambda a: a.T,
    # constant input [1, C, 4, 4] (NCHW, torch and TF alike) -> [1, 4, 4, C].
    "nchw_to_nhwc": lambda a: a.transpose(0, 2, 3, 1),
    # NVIDIA's StyleGAN2 constant input [C, 4, 4] -> [4, 4, C].
    "chw_to_hwc": lambda a: a.transpose(1, 2, 0),
    # torch ConvTranspose2d weight [I, O, kh, kw] -> the spatially flipped HWIO kernel of
    # the equivalent forward conv of the dilated input.
    "convt_to_flipped_hwio": lambda a: a.transpose(2, 3, 0, 1)[::-1, ::-1],
}
IGNORE = "ignore"
CHECK_BLUR = "check_blur"


@dataclasses.dataclass(frozen=True)
class Entry:
  source: str  # the tensor's name in the file
  dest: tuple[str, ...] | None  # path in the output tree; None for a tensor only checked or ignored
  transform: str  # a TRANSFORMS key, IGNORE or a check (CHECK_BLUR; stylegan2.CHECK_FILTER)
  reason: str = ""


def put(tree: dict, dest: tuple[str, ...], value) -> None:
  """Sets `tree[dest[0]][dest[1]]...` = value, making the dicts on the way."""
  node = tree
  for k in dest[:-1]:
    node = node.setdefault(k, {})
  node[dest[-1]] = value


def to_float32(transform: str, a) -> np.ndarray:
  """`TRANSFORMS[transform](a)` as a C-contiguous float32 array (0-d stays 0-d)."""
  return np.array(TRANSFORMS[transform](np.asarray(a)), dtype=np.float32, order="C")


def apply_table(table: list[Entry], tensors: Mapping[str, np.ndarray], source: str) -> dict:
  """Maps every source tensor through `table` into a nested dict of float32 arrays.

  Raises ValueError naming every source tensor the table lacks and every table
  entry the source lacks.
  """
  mismatch = name_mismatch(tensors, {e.source for e in table})
  if mismatch:
    raise ValueError(
        f"{source}: the tensors do not match the expected architecture.{mismatch}\n"
        "Is this the right kind of file, and the architecture (resolution, channels) right?")
  tree: dict = {}
  for e in table:
    a = np.asarray(tensors[e.source])
    if e.transform == IGNORE:
      continue
    if e.transform == CHECK_BLUR:
      _blur_kernel_ok(a)
      continue
    put(tree, e.dest, to_float32(e.transform, a))
  return tree
