"""The public PyTorch C2F-TCN's weights as our `C2FTCN`, written as a run
directory that `--config.teacher_workdir` accepts (docs/model.md)."""

from __future__ import annotations

import json
import os

import numpy as np

from exo2ego_jax.interop.state_dicts import check_params, strip_prefix
from exo2ego_jax.methods import supervised
from exo2ego_jax.models import c2f_tcn
from exo2ego_jax.runtime import checkpoints


# Public PyTorch module -> our C2FTCN module, in forward order.
_C2F_DOUBLE_CONVS = (
  [("inc.conv.conv", "x1")]
  + [(f"down{i}.max_pool_conv.1.conv", f"x{i + 1}") for i in range(1, 7)]
  + [("up.conv.conv", "up1")]
  + [(f"up{i}.conv.conv", f"up{i + 2}") for i in range(5)]
)
_C2F_HEADS = [(f"outcc{i}.conv", f"y{i + 1}") for i in range(5)] + [
  ("outcc.conv", "y")
]


def convert_c2f_tcn(state: dict) -> dict:
  """{"params", "batch_stats"} of our `C2FTCN` from the public PyTorch
  C2F-TCN state dict. Its ensemble `weights` parameter is not used by its
  forward pass and is dropped; so are BatchNorm's `num_batches_tracked`."""
  state = dict(strip_prefix(state, ("module.",)))
  if "inc.conv.conv.0.weight" not in state:
    raise ValueError(
      "no 'inc.conv.conv.0.weight': not a state dict of the "
      "public PyTorch C2F_TCN"
    )

  def conv(name):
    # torch Conv1d (out, in, k) -> flax Conv (k, in, out).
    return {
      "kernel": state.pop(f"{name}.weight").transpose(2, 1, 0),
      "bias": state.pop(f"{name}.bias"),
    }

  params, batch_stats = {}, {}
  for source, target in _C2F_DOUBLE_CONVS:
    params[target], batch_stats[target] = {}, {}
    # nn.Sequential(conv, bn, relu, conv, bn, relu): indices 0, 1, 3, 4.
    for i, (conv_index, bn_index) in enumerate(((0, 1), (3, 4))):
      params[target][f"conv{i}"] = conv(f"{source}.{conv_index}")
      bn = f"{source}.{bn_index}"
      params[target][f"bn{i}"] = {
        "scale": state.pop(f"{bn}.weight"),
        "bias": state.pop(f"{bn}.bias"),
      }
      batch_stats[target][f"bn{i}"] = {
        "mean": state.pop(f"{bn}.running_mean"),
        "var": state.pop(f"{bn}.running_var"),
      }
      state.pop(f"{bn}.num_batches_tracked", None)
  params["tpp"] = {"project": conv("tpp.conv")}
  for source, target in _C2F_HEADS:
    params[target] = conv(source)
  state.pop("weights", None)
  if state:
    raise ValueError(f"unconverted C2F-TCN weights {sorted(state)[:8]}")
  num_classes = params["y"]["kernel"].shape[-1]
  feature_dim = params["x1"]["conv0"]["kernel"].shape[1]
  check_params(
    c2f_tcn.C2FTCN(num_classes),
    params,
    np.zeros((1, 8, feature_dim), np.float32),
  )
  return {"params": params, "batch_stats": batch_stats}


def save_c2f_teacher(out_dir: str, variables: dict, source: str) -> None:
  """Writes a run directory that `--config.teacher_workdir` accepts."""
  os.makedirs(out_dir, exist_ok=True)
  kernel = variables["params"]["x1"]["conv0"]["kernel"]
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(
      {
        "mode": supervised.ExoSupervised.name,  # a valid teacher
        "imported_from": os.path.abspath(source),
        "feature_dim": int(kernel.shape[1]),
        "num_classes": int(variables["params"]["y"]["kernel"].shape[-1]),
      },
      f,
      indent=2,
    )
  state = {"step": np.zeros((), np.int32), **variables}
  run = checkpoints.RunCheckpoints(out_dir, "imported")
  run.save(0, state, {"imported": 0.0})
  run.close()
