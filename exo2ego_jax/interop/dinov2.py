"""DINOv2 weights (original release or Hugging Face layout) as our `ViT`,
and the backbone folder they are stored in.

A backbone is `<dir>/vit_config.json` (the `ViT` fields) and `<dir>/params`
(orbax); `extract_features --params` and `distill_backbone` read it, and a
`distill_backbone` workdir is one too.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import orbax.checkpoint as ocp

from exo2ego_jax.interop.state_dicts import check_params, strip_prefix
from exo2ego_jax.models import vit

VIT_CONFIG_FILE = "vit_config.json"
PARAMS_DIR = "params"
# Keys a converted backbone does not use (masked-image pretraining only).
_UNUSED_DINOV2_KEYS = ("mask_token",)


def hf_to_dinov2(state: dict) -> dict:
  """Renames a Hugging Face Dinov2 state dict into the original layout
  (fusing query/key/value into qkv and gate/up into w12)."""
  state = strip_prefix(state, ("dinov2.", "model."))
  renames = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.mask_token$", "mask_token"),
    (r"^embeddings\.register_tokens$", "register_tokens"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^layernorm\.", "norm."),
    (
      r"^encoder\.layer\.(\d+)\.attention\.(?:output\.dense|o_proj)\.",
      r"blocks.\1.attn.proj.",
    ),
    (
      r"^encoder\.layer\.(\d+)\.layer_scale(\d)\.lambda1$",
      r"blocks.\1.ls\2.gamma",
    ),
    (r"^encoder\.layer\.(\d+)\.mlp\.(?:weights_in)\.", r"blocks.\1.mlp.w12."),
    (
      r"^encoder\.layer\.(\d+)\.mlp\.(?:weights_out|down_proj)\.",
      r"blocks.\1.mlp.w3.",
    ),
    (
      r"^encoder\.layer\.(\d+)\.(norm1|norm2|mlp\.fc1|mlp\.fc2)\.",
      r"blocks.\1.\2.",
    ),
  ]
  # Parts fused by concatenation along the output axis, in PyTorch's order.
  fused = [
    (
      r"^encoder\.layer\.(\d+)\.attention\.(?:attention\.)?"
      r"(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)$",
      "attn.qkv",
      {"query": 0, "key": 1, "value": 2, "q_proj": 0, "k_proj": 1, "v_proj": 2},
    ),
    (
      r"^encoder\.layer\.(\d+)\.mlp\.(gate_proj|up_proj)\.(weight|bias)$",
      "mlp.w12",
      {"gate_proj": 0, "up_proj": 1},
    ),
  ]
  out, parts, unknown = {}, {}, []
  for key, value in state.items():
    for pattern, target, order in fused:
      match = re.match(pattern, key)
      if match:
        layer, part, kind = match.groups()
        parts.setdefault(f"blocks.{layer}.{target}.{kind}", {})[order[part]] = (
          value
        )
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
      f"{unknown[:5]}; use --format dinov2 for the original release"
    )
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
  return {
    "kernel": state.pop(f"{name}.weight").T,
    "bias": state.pop(f"{name}.bias"),
  }


def _norm(state: dict, name: str) -> dict:
  return {
    "scale": state.pop(f"{name}.weight"),
    "bias": state.pop(f"{name}.bias"),
  }


def _swiglu_ratio(embed_dim: int, hidden: int) -> float:
  """The mlp_ratio whose SwiGLU width is `hidden` (ViT-g: 4.0)."""
  for ratio in (4.0, hidden * 1.5 / embed_dim, hidden / embed_dim):
    if (int(int(embed_dim * ratio) * 2 / 3) + 7) // 8 * 8 == hidden:
      return ratio
  raise ValueError(
    f"no mlp_ratio gives a SwiGLU width of {hidden} for {embed_dim}-d tokens"
  )


def convert_dinov2(
  state: dict,
  fmt: str = "dinov2",
  num_heads: int | None = None,
  interpolate_offset: float | None = None,
  interpolate_antialias: bool | None = None,
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
      raise ValueError(
        "these keys are in the Hugging Face layout: use --format hf"
      )
    state = strip_prefix(state, ("backbone.", "module."))
  else:
    raise ValueError(f"format {fmt!r} is not a DINOv2 layout")
  state = dict(state)
  for key in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
    if key not in state:
      raise ValueError(
        f"no {key!r} in the checkpoint: not a DINOv2 "
        f"backbone in the {fmt} layout"
      )

  patch = state.pop("patch_embed.proj.weight")  # (D, 3, p, p)
  embed_dim, _, patch_size, _ = patch.shape
  grid = int(round(np.sqrt(state["pos_embed"].shape[1] - 1)))
  block_states = _dinov2_blocks(state)
  depth = len(block_states)
  if sorted(block_states) != list(range(depth)):
    raise ValueError(f"blocks {sorted(block_states)} are not 0..{depth - 1}")
  state = {k: v for k, v in state.items() if not k.startswith("blocks.")}
  ffn = "swiglu" if "mlp.w12.weight" in block_states[0] else "mlp"
  hidden = (
    block_states[0]["mlp.w12.weight"].shape[0] // 2
    if ffn == "swiglu"
    else block_states[0]["mlp.fc1.weight"].shape[0]
  )
  registers = "register_tokens" in state
  config = {
    "embed_dim": int(embed_dim),
    "depth": depth,
    "num_heads": int(num_heads or embed_dim // 64),
    "mlp_ratio": (
      _swiglu_ratio(embed_dim, hidden)
      if ffn == "swiglu"
      else hidden / embed_dim
    ),
    "ffn": ffn,
    "patch_size": int(patch_size),
    "pos_embed_grid": grid,
    "num_register_tokens": (
      int(state["register_tokens"].shape[1]) if registers else 0
    ),
    "layerscale_init": 1.0,
    "interpolate_offset": (
      interpolate_offset
      if interpolate_offset is not None
      else 0.1
      if fmt == "dinov2" and not registers
      else 0.0
    ),
    "interpolate_antialias": (
      interpolate_antialias if interpolate_antialias is not None else registers
    ),
  }
  if embed_dim % config["num_heads"]:
    raise ValueError(
      f"{embed_dim}-d tokens do not split into "
      f"{config['num_heads']} heads: pass num_heads"
    )

  params = {
    "patch_embed": {
      "kernel": patch.transpose(2, 3, 1, 0),
      "bias": state.pop("patch_embed.proj.bias"),
    },
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
      "attn": {
        "qkv": _dense(block, "attn.qkv"),
        "proj": _dense(block, "attn.proj"),
      },
      "ls1": {"gamma": block.pop("ls1.gamma", ones)},
      "norm2": _norm(block, "norm2"),
      "mlp": (
        {"w12": _dense(block, "mlp.w12"), "w3": _dense(block, "mlp.w3")}
        if ffn == "swiglu"
        else {"fc1": _dense(block, "mlp.fc1"), "fc2": _dense(block, "mlp.fc2")}
      ),
      "ls2": {"gamma": block.pop("ls2.gamma", ones)},
    }
    if block:
      raise ValueError(f"block {i} has unconverted weights {sorted(block)}")
  leftover = sorted(k for k in state if k not in _UNUSED_DINOV2_KEYS)
  if leftover:
    raise ValueError(
      f"unconverted weights {leftover[:8]}: not a plain "
      "DINOv2 backbone (heads are not supported)"
    )
  check_params(vit.ViT(**config), params)
  return params, config


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
      "python -m exo2ego_jax.distill_backbone"
    )
  with open(config_path) as f:
    config = json.load(f)
  checkpointer = ocp.StandardCheckpointer()
  params = checkpointer.restore(os.path.abspath(os.path.join(path, PARAMS_DIR)))
  checkpointer.close()
  return vit.ViT(**config), params
