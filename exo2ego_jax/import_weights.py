"""Converts PyTorch checkpoints to Flax parameter trees.

  python -m exo2ego_jax.import_weights --checkpoint dinov2_vitl14_pretrain.pth \
      --format dinov2 --out weights/dinov2_vitl14
  python -m exo2ego_jax.import_weights --checkpoint model.safetensors \
      --format hf --out weights/dinov2_large_hf
  python -m exo2ego_jax.import_weights --checkpoint c2f_tcn.model \
      --format c2f_tcn --out runs/imported_teacher

Formats:
  dinov2   the original release's state dict (`cls_token`, `pos_embed`,
           `patch_embed.proj.*`, `blocks.N.attn.qkv.*`, `blocks.N.ls1.gamma`,
           `blocks.N.mlp.fc1.*` or `mlp.w12/w3` for ViT-g, `norm.*`,
           `register_tokens`, `mask_token`); block-chunked training
           checkpoints (`blocks.C.N.*`) and `backbone.` prefixes work too.
  hf       Hugging Face `Dinov2Model` / `Dinov2WithRegistersModel`, both the
           hub files' names (`encoder.layer.N.attention.attention.query.*`,
           `attention.output.dense`, `mlp.weights_in/out`) and transformers
           5's in-memory names (`attention.q_proj`, `attention.o_proj`,
           `mlp.gate_proj/up_proj/down_proj`).
  c2f_tcn  the public PyTorch C2F-TCN (dipika-singhania/C2F-TCN `model.py`:
           `inc`, `down1..6`, `tpp`, `up`, `up0..4`, `outcc0..4`, `outcc`).

A backbone is written as `<out>/vit_config.json` (the `ViT` fields) and
`<out>/params` (orbax); `extract_features --params <out>` and
`distill_backbone` read that layout (`load_backbone`). A C2F-TCN is written as
a run directory (`config.json` + `best/` checkpoint with params and
batch_stats) that `--config.teacher_workdir` accepts; it computes what the
published PyTorch model computes, at every length (docs/model.md).

An `--out` that already holds files is refused; `--overwrite` replaces it,
but only once the new output is completely written (into a sibling folder,
then swapped in), so a failed import leaves the old one as it was.

`.pth`/`.pt` files need torch; `.safetensors` files need only `safetensors`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

from absl import app
from absl import flags
import jax
import numpy as np
import orbax.checkpoint as ocp

from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.runtime import cli
from exo2ego_jax.methods import supervised
from exo2ego_jax.models import c2f_tcn
from exo2ego_jax.models import vit

FORMATS = ("dinov2", "hf", "c2f_tcn")
VIT_CONFIG_FILE = "vit_config.json"
PARAMS_DIR = "params"
# Keys a converted backbone does not use (masked-image pretraining only).
_UNUSED_DINOV2_KEYS = ("mask_token",)


# ----- Reading checkpoints. -----

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
    raise ImportError(f"reading {path} needs PyTorch (pip install "
                      "torch==2.13.0), or convert it to .safetensors") from e
  state = torch.load(path, map_location="cpu", weights_only=True)
  for wrapper in ("state_dict", "model", "teacher"):
    if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
      state = state[wrapper]
  if not isinstance(state, dict):
    raise ValueError(f"{path} holds a {type(state).__name__}, not a state "
                     "dict")
  return {k: v.detach().float().numpy() for k, v in state.items()
          if hasattr(v, "detach")}


def _strip_prefix(state: dict, prefixes: tuple[str, ...]) -> dict:
  """Keeps the keys under the first prefix that any key has, unprefixed."""
  for prefix in prefixes:
    if any(k.startswith(prefix) for k in state):
      return {k[len(prefix):]: v for k, v in state.items()
              if k.startswith(prefix)}
  return state


# ----- DINOv2. -----

def hf_to_dinov2(state: dict) -> dict:
  """Renames a Hugging Face Dinov2 state dict into the original layout
  (fusing query/key/value into qkv and gate/up into w12)."""
  state = _strip_prefix(state, ("dinov2.", "model."))
  renames = [
      (r"^embeddings\.cls_token$", "cls_token"),
      (r"^embeddings\.mask_token$", "mask_token"),
      (r"^embeddings\.register_tokens$", "register_tokens"),
      (r"^embeddings\.position_embeddings$", "pos_embed"),
      (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
      (r"^layernorm\.", "norm."),
      (r"^encoder\.layer\.(\d+)\.attention\.(?:output\.dense|o_proj)\.",
       r"blocks.\1.attn.proj."),
      (r"^encoder\.layer\.(\d+)\.layer_scale(\d)\.lambda1$",
       r"blocks.\1.ls\2.gamma"),
      (r"^encoder\.layer\.(\d+)\.mlp\.(?:weights_in)\.", r"blocks.\1.mlp.w12."),
      (r"^encoder\.layer\.(\d+)\.mlp\.(?:weights_out|down_proj)\.",
       r"blocks.\1.mlp.w3."),
      (r"^encoder\.layer\.(\d+)\.(norm1|norm2|mlp\.fc1|mlp\.fc2)\.",
       r"blocks.\1.\2."),
  ]
  # Parts fused by concatenation along the output axis, in PyTorch's order.
  fused = [
      (r"^encoder\.layer\.(\d+)\.attention\.(?:attention\.)?"
       r"(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)$",
       "attn.qkv", {"query": 0, "key": 1, "value": 2,
                    "q_proj": 0, "k_proj": 1, "v_proj": 2}),
      (r"^encoder\.layer\.(\d+)\.mlp\.(gate_proj|up_proj)\.(weight|bias)$",
       "mlp.w12", {"gate_proj": 0, "up_proj": 1}),
  ]
  out, parts, unknown = {}, {}, []
  for key, value in state.items():
    for pattern, target, order in fused:
      match = re.match(pattern, key)
      if match:
        layer, part, kind = match.groups()
        parts.setdefault(f"blocks.{layer}.{target}.{kind}", {})[
            order[part]] = value
        break
    else:
      for pattern, target in renames:
        new_key, count = re.subn(pattern, target, key)
        if count:
          out[new_key] = value
          break
      else:
        unknown.append(key)
  if unknown:
    raise ValueError(
        f"{len(unknown)} keys are not Hugging Face Dinov2 weights, e.g. "
        f"{unknown[:5]}; use --format dinov2 for the original release")
  for key, pieces in parts.items():
    expected = 3 if ".qkv." in key else 2
    if sorted(pieces) != list(range(expected)):
      raise ValueError(f"{key}: found {len(pieces)} of its {expected} parts")
    out[key] = np.concatenate([pieces[i] for i in range(expected)], axis=0)
  return out


def _dinov2_blocks(state: dict) -> dict[int, dict[str, np.ndarray]]:
  """{block index: {name inside the block: array}}; chunked layouts
  (`blocks.C.N.`, FSDP training checkpoints) are flattened."""
  blocks = {}
  for key, value in state.items():
    match = re.match(r"^blocks\.(?:\d+\.)?(\d+)\.(.+)$", key)
    if match:
      blocks.setdefault(int(match.group(1)), {})[match.group(2)] = value
  return blocks


def _dense(state: dict, name: str) -> dict:
  """torch Linear (out, in) -> flax Dense kernel (in, out)."""
  return {"kernel": state.pop(f"{name}.weight").T,
          "bias": state.pop(f"{name}.bias")}


def _norm(state: dict, name: str) -> dict:
  return {"scale": state.pop(f"{name}.weight"),
          "bias": state.pop(f"{name}.bias")}


def _swiglu_ratio(embed_dim: int, hidden: int) -> float:
  """The mlp_ratio whose SwiGLU width is `hidden` (ViT-g: 4.0)."""
  for ratio in (4.0, hidden * 1.5 / embed_dim, hidden / embed_dim):
    if (int(int(embed_dim * ratio) * 2 / 3) + 7) // 8 * 8 == hidden:
      return ratio
  raise ValueError(f"no mlp_ratio gives a SwiGLU width of {hidden} for "
                   f"{embed_dim}-d tokens")


def convert_dinov2(state: dict, fmt: str = "dinov2",
                   num_heads: int | None = None,
                   interpolate_offset: float | None = None,
                   interpolate_antialias: bool | None = None
                   ) -> tuple[dict, dict]:
  """(flax params, ViT config) from a DINOv2 state dict of format `fmt`.

  The architecture is read off the weights. `num_heads` defaults to
  embed_dim / 64 (true of every released size). The position-embedding
  interpolation defaults to what the source code does: the original release
  uses the +0.1 offset without antialiasing, its register models and
  Hugging Face size the grid exactly, with antialiasing for registers.
  """
  if fmt == "hf":
    state = hf_to_dinov2(state)
  elif fmt == "dinov2":
    if any(k.startswith(("embeddings.", "encoder.layer.")) for k in state):
      raise ValueError("these keys are in the Hugging Face layout: use "
                       "--format hf")
    state = _strip_prefix(state, ("backbone.", "module."))
  else:
    raise ValueError(f"format {fmt!r} is not a DINOv2 layout")
  state = dict(state)
  for key in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
    if key not in state:
      raise ValueError(f"no {key!r} in the checkpoint: not a DINOv2 "
                       f"backbone in the {fmt} layout")

  patch = state.pop("patch_embed.proj.weight")  # (D, 3, p, p)
  embed_dim, _, patch_size, _ = patch.shape
  grid = int(round(np.sqrt(state["pos_embed"].shape[1] - 1)))
  block_states = _dinov2_blocks(state)
  depth = len(block_states)
  if sorted(block_states) != list(range(depth)):
    raise ValueError(f"blocks {sorted(block_states)} are not 0..{depth - 1}")
  state = {k: v for k, v in state.items() if not k.startswith("blocks.")}
  ffn = "swiglu" if "mlp.w12.weight" in block_states[0] else "mlp"
  hidden = (block_states[0]["mlp.w12.weight"].shape[0] // 2 if ffn == "swiglu"
            else block_states[0]["mlp.fc1.weight"].shape[0])
  registers = "register_tokens" in state
  config = {
      "embed_dim": int(embed_dim), "depth": depth,
      "num_heads": int(num_heads or embed_dim // 64),
      "mlp_ratio": (_swiglu_ratio(embed_dim, hidden) if ffn == "swiglu"
                    else hidden / embed_dim),
      "ffn": ffn, "patch_size": int(patch_size), "pos_embed_grid": grid,
      "num_register_tokens": (int(state["register_tokens"].shape[1])
                              if registers else 0),
      "layerscale_init": 1.0,
      "interpolate_offset": (interpolate_offset if interpolate_offset
                             is not None else
                             0.1 if fmt == "dinov2" and not registers else 0.0),
      "interpolate_antialias": (interpolate_antialias if interpolate_antialias
                                is not None else registers),
  }
  if embed_dim % config["num_heads"]:
    raise ValueError(f"{embed_dim}-d tokens do not split into "
                     f"{config['num_heads']} heads: pass num_heads")

  params = {
      "patch_embed": {"kernel": patch.transpose(2, 3, 1, 0),
                      "bias": state.pop("patch_embed.proj.bias")},
      "cls_token": state.pop("cls_token"),
      "pos_embed": state.pop("pos_embed"),
      "norm": _norm(state, "norm"),
  }
  if registers:
    params["register_tokens"] = state.pop("register_tokens")
  for i, block in sorted(block_states.items()):
    block = dict(block)
    ones = np.ones((embed_dim,), np.float32)  # released without LayerScale
    params[f"block{i}"] = {
        "norm1": _norm(block, "norm1"),
        "attn": {"qkv": _dense(block, "attn.qkv"),
                 "proj": _dense(block, "attn.proj")},
        "ls1": {"gamma": block.pop("ls1.gamma", ones)},
        "norm2": _norm(block, "norm2"),
        "mlp": ({"w12": _dense(block, "mlp.w12"), "w3": _dense(block, "mlp.w3")}
                if ffn == "swiglu" else
                {"fc1": _dense(block, "mlp.fc1"),
                 "fc2": _dense(block, "mlp.fc2")}),
        "ls2": {"gamma": block.pop("ls2.gamma", ones)},
    }
    if block:
      raise ValueError(f"block {i} has unconverted weights {sorted(block)}")
  leftover = sorted(k for k in state if k not in _UNUSED_DINOV2_KEYS)
  if leftover:
    raise ValueError(f"unconverted weights {leftover[:8]}: not a plain "
                     "DINOv2 backbone (heads are not supported)")
  check_params(vit.ViT(**config), params)
  return params, config


def check_params(model, params: dict, *args) -> None:
  """Raises if `params` do not have the shapes `model.init` creates."""
  if not args:
    size = model.patch_size * model.pos_embed_grid
    args = (np.zeros((1, size, size, 3), np.float32),)
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), *args))
  want = jax.tree.map(lambda a: tuple(a.shape), expected["params"])
  got = jax.tree.map(lambda a: tuple(np.shape(a)), params)
  if want != got:
    raise ValueError(f"converted parameters do not fit {type(model).__name__}:"
                     f"\n expected {want}\n got {got}")


def save_backbone(out_dir: str, params: dict, config: dict) -> None:
  """Writes `<out>/vit_config.json` and `<out>/params` (orbax)."""
  out_dir = os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(out_dir, PARAMS_DIR), params, force=True)
  checkpointer.wait_until_finished()
  checkpointer.close()
  with open(os.path.join(out_dir, VIT_CONFIG_FILE), "w") as f:
    json.dump(config, f, indent=2)


def load_backbone(path: str) -> tuple[vit.ViT, dict]:
  """(model, params) from a directory written by `save_backbone` (converted
  weights, or a `distill_backbone` workdir)."""
  config_path = os.path.join(path, VIT_CONFIG_FILE)
  if not os.path.exists(config_path):
    raise FileNotFoundError(
        f"{config_path} not found: {path} holds no backbone; convert one with "
        "python -m exo2ego_jax.import_weights or train one with "
        "python -m exo2ego_jax.distill_backbone")
  with open(config_path) as f:
    config = json.load(f)
  checkpointer = ocp.StandardCheckpointer()
  params = checkpointer.restore(os.path.abspath(os.path.join(path, PARAMS_DIR)))
  checkpointer.close()
  return vit.ViT(**config), params


# ----- C2F-TCN. -----

# Public PyTorch module -> our C2FTCN module, in forward order.
_C2F_DOUBLE_CONVS = (
    [("inc.conv.conv", "x1")]
    + [(f"down{i}.max_pool_conv.1.conv", f"x{i + 1}") for i in range(1, 7)]
    + [("up.conv.conv", "up1")]
    + [(f"up{i}.conv.conv", f"up{i + 2}") for i in range(5)])
_C2F_HEADS = ([(f"outcc{i}.conv", f"y{i + 1}") for i in range(5)]
              + [("outcc.conv", "y")])


def convert_c2f_tcn(state: dict) -> dict:
  """{"params", "batch_stats"} of our `C2FTCN` from the public PyTorch
  C2F-TCN state dict. Its ensemble `weights` parameter is not used by its
  forward pass and is dropped; so are BatchNorm's `num_batches_tracked`."""
  state = dict(_strip_prefix(state, ("module.",)))
  if "inc.conv.conv.0.weight" not in state:
    raise ValueError("no 'inc.conv.conv.0.weight': not a state dict of the "
                     "public PyTorch C2F_TCN")

  def conv(name):
    # torch Conv1d (out, in, k) -> flax Conv (k, in, out).
    return {"kernel": state.pop(f"{name}.weight").transpose(2, 1, 0),
            "bias": state.pop(f"{name}.bias")}

  params, batch_stats = {}, {}
  for source, target in _C2F_DOUBLE_CONVS:
    params[target], batch_stats[target] = {}, {}
    # nn.Sequential(conv, bn, relu, conv, bn, relu): indices 0, 1, 3, 4.
    for i, (conv_index, bn_index) in enumerate(((0, 1), (3, 4))):
      params[target][f"conv{i}"] = conv(f"{source}.{conv_index}")
      bn = f"{source}.{bn_index}"
      params[target][f"bn{i}"] = {"scale": state.pop(f"{bn}.weight"),
                                  "bias": state.pop(f"{bn}.bias")}
      batch_stats[target][f"bn{i}"] = {"mean": state.pop(f"{bn}.running_mean"),
                                       "var": state.pop(f"{bn}.running_var")}
      state.pop(f"{bn}.num_batches_tracked", None)
  params["tpp"] = {"project": conv("tpp.conv")}
  for source, target in _C2F_HEADS:
    params[target] = conv(source)
  state.pop("weights", None)
  if state:
    raise ValueError(f"unconverted C2F-TCN weights {sorted(state)[:8]}")
  num_classes = params["y"]["kernel"].shape[-1]
  feature_dim = params["x1"]["conv0"]["kernel"].shape[1]
  check_params(c2f_tcn.C2FTCN(num_classes), params,
               np.zeros((1, 8, feature_dim), np.float32))
  return {"params": params, "batch_stats": batch_stats}


def save_c2f_teacher(out_dir: str, variables: dict, source: str) -> None:
  """Writes a run directory that `--config.teacher_workdir` accepts."""
  os.makedirs(out_dir, exist_ok=True)
  kernel = variables["params"]["x1"]["conv0"]["kernel"]
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump({"mode": supervised.ExoSupervised.name,  # a valid teacher
               "imported_from": os.path.abspath(source),
               "feature_dim": int(kernel.shape[1]),
               "num_classes": int(variables["params"]["y"]["kernel"].shape[-1])},
              f, indent=2)
  state = {"step": np.zeros((), np.int32), **variables}
  run = checkpoints.RunCheckpoints(out_dir, "imported")
  run.save(0, state, {"imported": 0.0})
  run.close()


# ----- Writing the output. -----

def check_output(out: str, overwrite: bool) -> None:
  """Raises unless `out` is free (absent or an empty folder) or may be
  replaced."""
  if overwrite or not os.path.exists(out):
    return
  if os.path.isdir(out) and not os.listdir(out):
    return
  held = (", ".join(sorted(os.listdir(out))[:4]) if os.path.isdir(out)
          else "a file")
  raise ValueError(f"{out} already holds {held}: pass --overwrite to replace "
                   "it, or choose another output")


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


def import_checkpoint(checkpoint: str, fmt: str, out: str,
                      overwrite: bool = False,
                      num_heads: int | None = None) -> str:
  """Converts `checkpoint` (format `fmt`) into `out`; returns a summary."""
  check_output(out, overwrite)  # before the (slow) reading and converting
  state = load_state_dict(checkpoint)
  if fmt == "c2f_tcn":
    variables = convert_c2f_tcn(state)
    write_output(out, lambda path: save_c2f_teacher(path, variables,
                                                   checkpoint), overwrite)
    return f"wrote C2F-TCN teacher run {out}"
  params, config = convert_dinov2(state, fmt, num_heads)
  write_output(out, lambda path: save_backbone(path, params, config),
               overwrite)
  count = sum(np.size(p) for p in jax.tree.leaves(params))
  return (f"wrote {out}: {count / 1e6:.1f}M parameters, "
          + ", ".join(f"{k}={v}" for k, v in config.items()))


# ----- Command line. -----

def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  print(import_checkpoint(f.checkpoint, f.format, f.out, f.overwrite,
                          f.num_heads))


def define_flags() -> None:
  """Flags live here, not at import, so that other entry points can import
  this module's functions without flag-name clashes."""
  flags.DEFINE_string("checkpoint", None,
                      "PyTorch .pth/.pt or .safetensors file.", required=True)
  flags.DEFINE_enum("format", None, FORMATS, "Layout of the checkpoint.",
                    required=True)
  flags.DEFINE_string("out", None, "Output directory.", required=True)
  flags.DEFINE_bool("overwrite", False,
                    "Replace an --out that already holds files (only once "
                    "the new output is complete).")
  flags.DEFINE_integer("num_heads", None,
                       "Attention heads (DINOv2; default embed_dim / 64).")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
