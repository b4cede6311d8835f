"""Training methods, one module each, registered by name (registry.py).

Importing this package imports every module in it, so registry.get(
config.mode) knows every method, and adding a method is adding a module
(docs/methods.md).
"""

import importlib
import pkgutil

from exo2ego_jax.methods import registry  # noqa: F401  (methods.registry)

# The supervised methods first: names() lists methods in import order.
from exo2ego_jax.methods import supervised  # noqa: F401

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
  importlib.import_module(f"{__name__}.{_module}")
