"""A synthesis network as a table of named stages, so that the whole network and its two halves
at a cut point (ILO's intermediate layer) run one loop.

A `Stage` is a name and a function from the state after the previous stage (a pytree of
[N, ...] arrays; None before the first stage) to the state after this one. A network's
`synthesize` runs every stage, `synthesize_until(layer)` the stages up to and including the
one named `layer`, `synthesize_from(layer, activation)` the stages after it, starting from
`activation` (with `until=`, only those up to a later cut: its activation). The cut points are the names of the stages a cut may follow (a network lists
them in `cut_points(config)`; not the last stage, whose output is the image).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence


class Stage(NamedTuple):
  """One step of a synthesis network: `run(state) -> state` (pytrees of [N, ...] arrays)."""
  name: str
  run: Callable[[Any], Any]


def check_cut(layer: str, cut_points: Sequence[str], network: str) -> None:
  """ValueError naming the cut points when `layer` is not one of them."""
  if layer not in cut_points:
    raise ValueError(f"{network} has no cut point {layer!r}; its cut points are "
                     f"{', '.join(cut_points) or '(none)'}.")


def run_stages(stages: Sequence[Stage], state: Any = None, *, until: str | None = None,
               after: str | None = None) -> Any:
  """The state after running `stages` in order from `state`: all of them; with `until`, those
  up to and including the stage of that name; with `after`, those after it; with both, those
  after `after` up to and including `until` (`until` must come after `after`)."""
  names = [stage.name for stage in stages]
  start = 0 if after is None else names.index(after) + 1
  stop = len(stages) if until is None else names.index(until) + 1
  if stop < start:
    raise ValueError(f"run_stages: {until!r} does not come after {after!r}.")
  for stage in stages[start:stop]:
    state = stage.run(state)
  return state
