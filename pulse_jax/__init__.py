"""pulse-jax: PULSE (CVPR 2020) photo upsampling by latent-space search, in JAX/Flax.

    import pulse_jax
    g = pulse_jax.load_generator()
    r = pulse_jax.upsample("face.png", g, restarts=16, keep=3)

The API (`pulse_jax.api`) is imported on first use: `import pulse_jax` stays cheap (no jax).
"""

__version__ = "0.1.0"

# name -> the module that defines it, imported when the name is first used (PEP 562).
_LAZY = {
    "load_generator": "pulse_jax.api",
    "upsample": "pulse_jax.api",
    "evaluate": "pulse_jax.api",
    "Result": "pulse_jax.api",
    "Model": "pulse_jax.job.model",
    "UsageError": "pulse_jax.job.errors",
    "InputError": "pulse_jax.io.input_images",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
  if name in _LAZY:
    import importlib
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'pulse_jax' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_LAZY))
