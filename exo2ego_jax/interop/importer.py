"""One import: read a checkpoint, convert it, and write the output folder
so that a failed or refused import never touches an existing one."""

from __future__ import annotations

import os
import shutil
import tempfile

import jax
import numpy as np

from exo2ego_jax.interop.c2f import convert_c2f_tcn, save_c2f_teacher
from exo2ego_jax.interop.dinov2 import convert_dinov2, save_backbone
from exo2ego_jax.interop.state_dicts import load_state_dict

FORMATS = ("dinov2", "hf", "c2f_tcn")


def check_output(out: str, overwrite: bool) -> None:
  """Raises unless `out` is free (absent or an empty folder) or may be
  replaced."""
  if overwrite or not os.path.exists(out):
    return
  if os.path.isdir(out) and not os.listdir(out):
    return
  held = (
    ", ".join(sorted(os.listdir(out))[:4]) if os.path.isdir(out) else "a file"
  )
  raise ValueError(
    f"{out} already holds {held}: pass --overwrite to replace "
    "it, or choose another output"
  )


def write_output(out: str, write, overwrite: bool = False) -> None:
  """Calls write(folder) on a fresh sibling of `out`, then moves it to `out`.

  An `out` that holds files is refused (`check_output`) unless `overwrite`;
  then it is swapped out only after `write` has succeeded, and deleted last.
  """
  check_output(out, overwrite)
  out = os.path.abspath(out)
  parent, name = os.path.split(out)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{name}.importing-", dir=parent)
  try:
    write(staging)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  replaced = None
  if os.path.exists(out):
    replaced = tempfile.mkdtemp(prefix=f".{name}.replaced-", dir=parent)
    os.rmdir(replaced)  # a free name next to out, on the same file system
    os.rename(out, replaced)
  try:
    os.rename(staging, out)
  except BaseException:
    if replaced:
      os.rename(replaced, out)
    shutil.rmtree(staging, ignore_errors=True)
    raise
  if replaced:
    if os.path.isdir(replaced):
      shutil.rmtree(replaced)
    else:
      os.remove(replaced)


def import_checkpoint(
  checkpoint: str,
  fmt: str,
  out: str,
  overwrite: bool = False,
  num_heads: int | None = None,
) -> str:
  """Converts `checkpoint` (format `fmt`) into `out`; returns a summary."""
  check_output(out, overwrite)  # before the (slow) reading and converting
  state = load_state_dict(checkpoint)
  if fmt == "c2f_tcn":
    variables = convert_c2f_tcn(state)
    write_output(
      out, lambda path: save_c2f_teacher(path, variables, checkpoint), overwrite
    )
    return f"wrote C2F-TCN teacher run {out}"
  params, config = convert_dinov2(state, fmt, num_heads)
  write_output(out, lambda path: save_backbone(path, params, config), overwrite)
  count = sum(np.size(p) for p in jax.tree.leaves(params))
  return f"wrote {out}: {count / 1e6:.1f}M parameters, " + ", ".join(
    f"{k}={v}" for k, v in config.items()
  )
