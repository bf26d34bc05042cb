"""The errors of the job and the API (`pulse_jax.InputError` is `pulse_jax.io.input_images.InputError`)."""
from __future__ import annotations


class UsageError(ValueError):
  """A problem with the options or the set-up (the command's exit status 2); nothing was
  searched. The message names the flag ('--steps: must be an integer >= 1 (got 0)')."""
