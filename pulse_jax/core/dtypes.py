"""The compute dtypes a generator may compute in (`pulse_jax.generators.Generator.compute_dtype`).

Defined here, below every layer and without jax, so that the job's --compute_dtype choices
(`pulse_jax.job.options.COMPUTE_DTYPES`) are derived from this one list without importing
the generators (which import jax).
"""

# float64 is a verification mode (under jax x64): a search in float64 reproduces the
# reference's float64 runs to ~1e-9 (tests/search/test_search.py), where float32 runs are chaotic.
COMPUTE_DTYPES = ("float32", "bfloat16", "float64")

# Dtypes for verification only (they need jax's 64-bit mode): not offered as --compute_dtype.
VERIFICATION_DTYPES = ("float64",)
