"""python -m pulse_jax.gallery OUTPUT_DIR: (re)builds OUTPUT_DIR/index.html, the offline page of
a `pulse_jax.run` run, from the files the run left there (the page: `pulse_jax.io.gallery`).

In Python: `pulse_jax.io.gallery.write_gallery(output_dir) -> path` (docs/gallery.md).
"""
from __future__ import annotations

import argparse
import sys

from pulse_jax.io.gallery import write_gallery


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
      prog="python -m pulse_jax.gallery",
      description="(Re)build OUTPUT_DIR/index.html, the offline gallery page of a pulse_jax.run "
                  "run, from the files the run left there.")
  p.add_argument("output_dir", metavar="OUTPUT_DIR", help="the run's --output_dir")
  args = p.parse_args(argv)
  try:
    path = write_gallery(args.output_dir)
  except (FileNotFoundError, NotADirectoryError, PermissionError) as e:
    print(f"pulse_jax.gallery: error: {e}", file=sys.stderr)
    return 2
  print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
