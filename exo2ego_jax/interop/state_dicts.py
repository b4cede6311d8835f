"""PyTorch state dicts as flat numpy dicts, and the shape check of a
converted tree against the Flax module it is meant for."""

from __future__ import annotations

import os

import jax
import numpy as np


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Flat {name: float32 array} from a .pth/.pt (torch) or .safetensors file.

  Training checkpoints that wrap the weights (`{"model": ...}`,
  `{"state_dict": ...}`, `{"teacher": ...}`) are unwrapped.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint {path} does not exist")
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

    return {k: np.asarray(v, np.float32) for k, v in load_file(path).items()}
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
      f"reading {path} needs PyTorch (pip install "
      "torch==2.13.0), or convert it to .safetensors"
    ) from e
  state = torch.load(path, map_location="cpu", weights_only=True)
  for wrapper in ("state_dict", "model", "teacher"):
    if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
      state = state[wrapper]
  if not isinstance(state, dict):
    raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
  return {
    k: v.detach().float().numpy()
    for k, v in state.items()
    if hasattr(v, "detach")
  }


def strip_prefix(state: dict, prefixes: tuple[str, ...]) -> dict:
  """Keeps the keys under the first prefix that any key has, unprefixed."""
  for prefix in prefixes:
    if any(k.startswith(prefix) for k in state):
      return {
        k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)
      }
  return state


def check_params(model, params: dict, *args) -> None:
  """Raises if `params` do not have the shapes `model.init` creates."""
  if not args:
    size = model.patch_size * model.pos_embed_grid
    args = (np.zeros((1, size, size, 3), np.float32),)
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), *args))
  want = jax.tree.map(lambda a: tuple(a.shape), expected["params"])
  got = jax.tree.map(lambda a: tuple(np.shape(a)), params)
  if want != got:
    raise ValueError(
      f"converted parameters do not fit {type(model).__name__}:"
      f"\n expected {want}\n got {got}"
    )
