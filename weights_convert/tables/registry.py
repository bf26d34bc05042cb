"""The one list of name tables: generator family kind -> the module that converts its weights.

Each module is that family's tables (`weights_convert/tables/<family>.py`). A module that
converts NVIDIA's network pickles (`nvidia_tables`) also provides:
  GENERATOR_CLASS: NVIDIA's class, e.g. 'training.networks_stylegan2.Generator';
  SOURCE_MARK: a line start found in that class's module source and in no other NVIDIA
    module's (the pickle records the source, not the module's name; it is only searched,
    never run);
  from_network(data: nvidia_pickle.NetworkData) -> (config, params).
Adding a family: its module in `pulse_jax.generators` with its line in
`pulse_jax.generators.registry`, its tables module here with its line in `TABLES`. The runtime
(`pulse_jax`) never imports this package; this list names the family kinds instead.
"""
from __future__ import annotations

from types import ModuleType

from weights_convert.tables import dcgan, stylegan1, stylegan2, stylegan3

# Family kind (`pulse_jax.generators.registry.FAMILIES`) -> its tables module.
TABLES: dict[str, ModuleType] = {
    "stylegan": stylegan1,
    "dcgan": dcgan,
    "stylegan2": stylegan2,
    "stylegan3": stylegan3,
}

# Modules of NVIDIA's repos that hold no generator (named in messages only).
OTHER_MODULE_MARKS = (("class AugmentPipe(", "training.augment"),)


def nvidia_tables() -> dict[str, tuple[str, ModuleType]]:
  """NVIDIA generator class -> (family kind, its tables module), for the families whose
  tables read NVIDIA's network pickles."""
  return {module.GENERATOR_CLASS: (kind, module) for kind, module in TABLES.items()
          if hasattr(module, "GENERATOR_CLASS")}


def module_marks() -> tuple[tuple[str, str], ...]:
  """(source mark, NVIDIA module name) of every known NVIDIA module."""
  marks = [(m.SOURCE_MARK, m.GENERATOR_CLASS.rsplit(".", 1)[0])
           for _, m in nvidia_tables().values()]
  return tuple(marks) + OTHER_MODULE_MARKS


def for_class(class_name: str) -> tuple[str, ModuleType] | None:
  """(family kind, tables module) that converts NVIDIA's `class_name`, or None."""
  return nvidia_tables().get(class_name)


def generator_classes() -> list[str]:
  return sorted(nvidia_tables())
