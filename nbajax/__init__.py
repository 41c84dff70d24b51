"""nbajax: backdoor removal by distillation (NAD, NBA) in JAX/Flax.

Subpackages are imported lazily by the user; importing `nbajax` itself is
cheap and pulls in no Flax, Orbax or TFDS.
"""

__version__ = "0.1.0"
