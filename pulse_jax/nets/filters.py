"""StyleGAN3's designed low-pass filters, in numpy (no scipy at run time).

`design_lowpass_filter` reproduces NVIDIA's `SynthesisLayer.design_lowpass_filter`
(training/networks_stylegan3.py): a separable Kaiser-windowed sinc filter, as
`scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)` designs it, or for
`radial=True` the radially symmetric jinc filter with a separable Kaiser window.

Converted networks carry the filters NVIDIA stored in the pickle (`up_filter`,
`down_filter` buffers); these designs are for random initialisation and for checking
the stored buffers (tests/nets/test_stylegan3.py: max abs diff below 1e-7).
"""
from __future__ import annotations

import numpy as np

# Trapezoid nodes of the Bessel integral: exact to float64 rounding for |x| < ~400.
_BESSEL_NODES = 1024


def kaiser_atten(numtaps: int, width: float) -> float:
  """Stop-band attenuation (dB) of a Kaiser FIR filter; `width` relative to Nyquist
  (scipy.signal.kaiser_atten)."""
  return 2.285 * (numtaps - 1) * np.pi * width + 7.95


def kaiser_beta(atten: float) -> float:
  """Kaiser window shape for a stop-band attenuation in dB (scipy.signal.kaiser_beta)."""
  if atten > 50:
    return 0.1102 * (atten - 8.7)
  if atten > 21:
    return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
  return 0.0


def bessel_j1(x: np.ndarray) -> np.ndarray:
  """Bessel function of the first kind, order 1, float64, any shape.

  J1(x) = 1/(2 pi) * integral over one period of cos(t - x sin t) dt: the integrand is
  periodic and analytic, so the trapezoid rule converges exponentially.
  """
  x = np.asarray(x, np.float64)
  t = 2 * np.pi * np.arange(_BESSEL_NODES) / _BESSEL_NODES
  return np.cos(t - x[..., None] * np.sin(t)).mean(axis=-1)


def kaiser_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
  """[numtaps] float64: scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs).

  A sinc low-pass with cut-off `cutoff` (Hz at sampling rate `fs`), Kaiser window whose
  transition band is `width` Hz wide, scaled to unit DC gain.
  """
  nyq = 0.5 * fs
  c = cutoff / nyq
  beta = kaiser_beta(kaiser_atten(numtaps, width / nyq))
  m = np.arange(numtaps) - 0.5 * (numtaps - 1)
  h = c * np.sinc(c * m) * np.kaiser(numtaps, beta)
  return h / np.sum(h)


def jinc_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
  """[numtaps, numtaps] float64: NVIDIA's radially symmetric jinc low-pass, Kaiser windowed
  (outer product of 1-D windows), scaled to unit DC gain."""
  x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
  r = np.hypot(*np.meshgrid(x, x))
  with np.errstate(divide="ignore", invalid="ignore"):
    f = bessel_j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
  f = np.where(r == 0, cutoff, f)  # the limit at r = 0 (odd numtaps only)
  beta = kaiser_beta(kaiser_atten(numtaps, width / (fs / 2)))
  w = np.kaiser(numtaps, beta)
  f = f * np.outer(w, w)
  return f / np.sum(f)


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> np.ndarray | None:
  """NVIDIA's filter design: None for numtaps 1 (identity), else float32 [numtaps]
  (separable Kaiser) or [numtaps, numtaps] (radial jinc)."""
  if numtaps < 1:
    raise ValueError(f"numtaps must be >= 1, got {numtaps}.")
  if numtaps == 1:
    return None
  f = jinc_lowpass(numtaps, cutoff, width, fs) if radial else kaiser_lowpass(
      numtaps, cutoff, width, fs)
  return f.astype(np.float32)
