"""Which restarts of an image are kept as its candidates, how different they are, and where they
differ: the range of faces the search found, once.

Many faces down-scale to the same few pixels; the restarts within eps of one input are such
faces. The kept candidates are chosen to show that range (`diverse_selection`): the best restart
first (`search/rank.py`), then each next one the restart within eps farthest from those already
kept (greedy farthest point). Restarts that are not within eps only fill up when too few are.

The feature space is the HR image itself, area-pooled to at most `FEATURE_SIDE` pixels a side
(`image_features`), with the root-mean-square pixel difference as the distance: it is what a
person looking at the candidates sees. Within eps every candidate has the same down-scaled image
(to within eps), so their differences are exactly the details the search imagined. The latent
would be a poorer space: distances there are bent by the generator (the mapping network, the
sphere of the latent's radius, layers that hardly change the face).

`spread_map`: per pixel, how much the within-eps restarts' HR images differ (standard deviation
over restarts, averaged over channels): bright where the input did not determine the output.
It is the spread of this search with this generator, not a confidence about a real person.

Everything here is numpy on the host.
"""
from __future__ import annotations

import numpy as np

FEATURE_SIDE = 64   # image features: HR images area-pooled to at most this many pixels a side
SELECTIONS = ("diverse", "l2")   # kept-candidate orders: greedy farthest point, or the ranking


def image_features(hr: np.ndarray) -> np.ndarray:
  """hr: [M, C, H, W] float in [0, 1] -> [M, F] float64 features: each image area-pooled to at
  most FEATURE_SIDE pixels a side (H a multiple of the pooled side), flattened."""
  m, c, h, w = hr.shape
  f = max(1, h // FEATURE_SIDE)
  while h % f or w % f:
    f -= 1
  pooled = np.asarray(hr, np.float64).reshape(m, c, h // f, f, w // f, f).mean(axis=(3, 5))
  return pooled.reshape(m, -1)


def distances(features: np.ndarray) -> np.ndarray:
  """[M, F] -> [M, M] float64 root-mean-square difference between every two rows."""
  sq = np.sum(features ** 2, axis=1)
  d2 = sq[:, None] + sq[None, :] - 2.0 * features @ features.T
  return np.sqrt(np.maximum(d2, 0.0) / features.shape[1])


def diverse_selection(features: np.ndarray, ranking: np.ndarray, within: np.ndarray,
                      keep: int) -> tuple[np.ndarray, int]:
  """The `keep` candidates of one image, best first, then greedy farthest point.

  features: [R, F] per restart (`image_features`); ranking: [R] restart indices best first
  (`rank.ranking`); within: [R] bool, restart within eps. Among the within-eps restarts the
  first kept is the best ranked; each next is the one whose distance to its nearest kept
  candidate is largest (ties: the better ranked). When fewer than `keep` are within eps, the
  rest are the best ranked of the others. Returns (selected [keep] int64, filled: how many of
  them are not within eps).
  """
  ranking = np.asarray(ranking)
  pool = [int(r) for r in ranking if within[r]]
  chosen: list[int] = []
  if pool:
    chosen.append(pool.pop(0))
    d = distances(features[[chosen[0]] + pool])[0, 1:]   # distance to the nearest kept one
    while pool and len(chosen) < keep:
      i = int(np.argmax(d))          # argmax: the first (best ranked) of equal distances
      chosen.append(pool.pop(i))
      d = np.delete(d, i)
      if pool:
        d = np.minimum(d, distances(features[[chosen[-1]] + pool])[0, 1:])
  fill = [int(r) for r in ranking if not within[r]][:keep - len(chosen)]
  return np.asarray(chosen + fill, np.int64), len(fill)


def l2_selection(ranking: np.ndarray, within: np.ndarray, keep: int) -> tuple[np.ndarray, int]:
  """The reference's order: the `keep` best ranked restarts (`rank.ranking`). Same returns as
  `diverse_selection`."""
  selected = np.asarray(ranking[:keep], np.int64)
  return selected, int(np.sum(~np.asarray(within)[selected]))


def mean_pairwise_distance(features: np.ndarray) -> float:
  """[K, F] -> mean RMS difference over the K (K - 1) / 2 pairs; NaN when K < 2."""
  k = features.shape[0]
  if k < 2:
    return float("nan")
  return float(distances(features)[np.triu_indices(k, 1)].mean())


class SpreadAccumulator:
  """The per-pixel spread of many HR images, added a few at a time (the renders of a large
  search need not all be held): `add(hr)` then `map()`.

  Standard deviation over the images (population, ddof 0) of each pixel and channel, averaged
  over channels: [H, W] float32 in [0, 0.5] for images in [0, 1].
  """

  def __init__(self):
    self.count = 0
    self.sum = self.sum_sq = None

  def add(self, hr: np.ndarray) -> None:
    """hr: [M, C, H, W] float in [0, 1]."""
    hr = np.asarray(hr, np.float64)
    if not hr.shape[0]:
      return
    if self.sum is None:
      self.sum = np.zeros(hr.shape[1:])
      self.sum_sq = np.zeros(hr.shape[1:])
    self.count += hr.shape[0]
    self.sum += hr.sum(axis=0)
    self.sum_sq += (hr ** 2).sum(axis=0)

  def map(self) -> np.ndarray | None:
    """[H, W] float32, or None with fewer than 2 images (a spread needs two)."""
    if self.count < 2:
      return None
    mean = self.sum / self.count
    var = np.maximum(self.sum_sq / self.count - mean ** 2, 0.0)
    return np.sqrt(var).mean(axis=0).astype(np.float32)


def spread_map(hr: np.ndarray) -> np.ndarray | None:
  """hr: [M, C, H, W] float in [0, 1] -> [H, W] float32 per-pixel spread (`SpreadAccumulator`),
  or None when M < 2."""
  acc = SpreadAccumulator()
  acc.add(hr)
  return acc.map()
