"""The one list of generator families (kind -> family). Adding a family: its module in this
package and one line here; its converter: its name-table module in weights_convert/tables/ and
one line in weights_convert/tables/registry.py."""
from __future__ import annotations

from pulse_jax.generators.base import Family
from pulse_jax.generators.dcgan import DCGAN
from pulse_jax.generators.stylegan1 import StyleGAN1
from pulse_jax.generators.stylegan2 import StyleGAN2
from pulse_jax.generators.stylegan3 import StyleGAN3

FAMILIES: dict[str, Family] = {f.kind: f for f in (StyleGAN1(), DCGAN(), StyleGAN2(), StyleGAN3())}


def family(kind: str) -> Family:
  """The family of a weights kind; a clear error for an unknown one."""
  try:
    return FAMILIES[kind]
  except KeyError:
    raise ValueError(f"Unknown generator kind {kind!r}; known kinds: "
                     f"{', '.join(sorted(FAMILIES))}.") from None


def kinds() -> tuple[str, ...]:
  return tuple(FAMILIES)
