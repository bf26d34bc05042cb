"""Low utilities that the layers share and that import nothing from pulse_jax (nor jax).

`option`: the record of one option (name, type, default, help, check, where it applies), its
checks and messages, and the frozen dataclasses whose fields are a table of options.
"""
