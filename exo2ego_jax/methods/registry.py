"""The name -> method table that config.mode looks up.

A method module registers its class with `@register("name")`; everything
that asks what a method needs (the trainer, the benchmark, tests) queries
this table instead of keeping lists of names. Importing
`exo2ego_jax.methods` imports every method module, so the table is full.
"""

from __future__ import annotations

from typing import Callable

_METHODS: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
  """Class decorator: makes the method class available as config.mode=name."""

  def decorator(cls: type) -> type:
    if name in _METHODS:
      raise ValueError(
        f"method {name!r} is registered twice "
        f"({_METHODS[name].__module__} and {cls.__module__})"
      )
    cls.name = name
    _METHODS[name] = cls
    return cls

  return decorator


def names(where: Callable[[type], bool] | None = None) -> tuple[str, ...]:
  """Registered names, in registration order; `where(method class)` filters
  them, e.g. names(where=lambda m: m.loads_teacher)."""
  return tuple(
    name for name, cls in _METHODS.items() if where is None or where(cls)
  )


def get(name: str) -> type:
  """The method class registered as `name`; unknown names are a config
  mistake, answered with the list of registered ones."""
  if name not in _METHODS:
    raise ValueError(
      f"config.mode={name!r} is unknown: use one of {', '.join(names())}"
    )
  return _METHODS[name]
