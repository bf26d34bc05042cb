"""Dependencies point one way: the runtime (pulse_jax) never imports the converter
(weights_convert); only the built-in model's first use converts, importing it lazily
(`pulse_jax.job.builtin_models`). weights_convert may import pulse_jax, not the reverse."""
from __future__ import annotations


import json
import os

from support.harness import REPO, run_python

# Imported one after another in a fresh interpreter; after each, no weights_convert module may
# be loaded. The packages' submodules are all imported (pkgutil), the rest by name.
PACKAGES = ("pulse_jax.nets", "pulse_jax.forward", "pulse_jax.generators")
MODULES = ("pulse_jax.search.program", "pulse_jax.runtime.loop", "pulse_jax.job.pipeline",
           "pulse_jax.run", "pulse_jax.api")

_PROBE = """
import importlib, json, pkgutil, sys
packages, modules = json.loads(sys.argv[1])
names = []
for p in packages:
  names += [p] + [m.name for m in pkgutil.walk_packages(importlib.import_module(p).__path__,
                                                          p + ".")]
names += modules
for name in names:
  importlib.import_module(name)
  loaded = sorted(m for m in sys.modules if m.split(".")[0] == "weights_convert")
  if loaded:
    print(json.dumps({"culprit": name, "loaded": loaded}))
    break
else:
  print(json.dumps({"culprit": None, "imported": names}))
"""


def test_the_runtime_imports_no_weights_convert_module():
  p = run_python("-c", _PROBE, json.dumps([PACKAGES, MODULES]), cwd=REPO, timeout=300,
                 env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert p.returncode == 0, p.stderr[-3000:]
  got = json.loads(p.stdout.strip().splitlines()[-1])
  assert got["culprit"] is None, (f"importing {got['culprit']} loaded {got['loaded']}: the runtime "
                                  "must not import weights_convert")
  # The probe did import what it names (a renamed module fails above, not silently here).
  assert {"pulse_jax.generators.prior", "pulse_jax.nets.stylegan2", "pulse_jax.forward.bicubic",
          *MODULES} <= set(got["imported"])



# The layers from the bottom up (docs/architecture.md): importing every module of one layer, in
# a fresh interpreter, loads no module of a layer above it, no entry point, no weights_convert.
LAYERS = ("core", "metrics", "nets", "generators", "io", "forward", "search", "runtime", "job")
ENTRY_POINTS = ("pulse_jax.api", "pulse_jax.run", "pulse_jax.render", "pulse_jax.align",
                "pulse_jax.gallery", "pulse_jax.evaluate")

_LAYER_PROBE = """
import importlib, json, pkgutil, sys
layers, i, entry = json.loads(sys.argv[1]), int(sys.argv[2]), set(json.loads(sys.argv[3]))
pkg = "pulse_jax." + layers[i]
names = [pkg] + [m.name for m in pkgutil.walk_packages(importlib.import_module(pkg).__path__,
                                                       pkg + ".")]
for name in names:
  importlib.import_module(name)
above = {"pulse_jax." + l for l in layers[i + 1:]}
bad = sorted(m for m in sys.modules if ".".join(m.split(".")[:2]) in above or m in entry
             or m.split(".")[0] == "weights_convert")
print(json.dumps({"modules": names, "above": bad}))
"""


def test_each_layer_loads_nothing_of_the_layers_above_it():
  """One interpreter per layer, so that no layer's imports hide behind another's."""
  for i, layer in enumerate(LAYERS):
    p = run_python("-c", _LAYER_PROBE, json.dumps(LAYERS), str(i), json.dumps(ENTRY_POINTS),
                   cwd=REPO, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(got["modules"]) >= 2, got        # the layer's modules were found and imported
    assert got["above"] == [], f"importing pulse_jax.{layer} loaded {got['above']}"
