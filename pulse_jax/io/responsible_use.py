"""The responsible-use notice shown wherever results are (gallery pages; reports; README).

Defined once here; docs/responsible-use.md explains it in full (sources, the built-in model's
training data). Import `NOTICE` (plain text, one paragraph) rather than copying the words.
"""
from __future__ import annotations

TITLE = "Responsible use"

NOTICE = (
    "These high-resolution faces are imagined people, not the person in the input: the search "
    "invents faces that down-scale to the input, it does not recover what was lost, and its "
    "outputs cannot be used to identify anyone (as the PULSE authors stress). Every output "
    "comes from the generator's training data: a generator trained on a skewed data set shifts "
    "faces toward that data (PULSE with a StyleGAN trained on FFHQ turned faces of people of "
    "colour white). Check what your model was trained on; the built-in DCGAN was trained on "
    "DigiFace-1M synthetic (rendered) faces. See docs/responsible-use.md in pulse-jax.")

DOC = "docs/responsible-use.md"
