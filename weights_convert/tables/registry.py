"""Which family reads which NVIDIA network class: built from the generator registry.

A family whose weights come from NVIDIA's network pickles names its name-table module in
`Family.nvidia_table` (e.g. 'weights_convert.tables.stylegan2'). That module provides:
  GENERATOR_CLASS: NVIDIA's class, e.g. 'training.networks_stylegan2.Generator';
  SOURCE_MARK: a line start found in that class's module source and in no other NVIDIA
    module's (the pickle records the source, not the module's name; it is only searched,
    never run);
  from_network(data: nvidia_pickle.NetworkData) -> (config, params).
Nothing else lists the NVIDIA families: adding one is its family module, its name table and
its line in `pulse_jax.generators.registry`.
"""
from __future__ import annotations

import importlib
from types import ModuleType

# Modules of NVIDIA's repos that hold no generator (named in messages only).
OTHER_MODULE_MARKS = (("class AugmentPipe(", "training.augment"),)


def tables() -> dict[str, tuple[str, ModuleType]]:
  """NVIDIA generator class -> (family kind, its name-table module)."""
  from pulse_jax.generators.registry import FAMILIES
  out = {}
  for kind, fam in FAMILIES.items():
    if fam.nvidia_table:
      module = importlib.import_module(fam.nvidia_table)
      out[module.GENERATOR_CLASS] = (kind, module)
  return out


def module_marks() -> tuple[tuple[str, str], ...]:
  """(source mark, NVIDIA module name) of every known NVIDIA module."""
  marks = [(m.SOURCE_MARK, m.GENERATOR_CLASS.rsplit(".", 1)[0]) for _, m in tables().values()]
  return tuple(marks) + OTHER_MODULE_MARKS


def for_class(class_name: str) -> tuple[str, ModuleType] | None:
  """(family kind, name-table module) that converts NVIDIA's `class_name`, or None."""
  return tables().get(class_name)


def generator_classes() -> list[str]:
  return sorted(tables())
