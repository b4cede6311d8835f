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
`distill_backbone` read that layout
(`exo2ego_jax.interop.dinov2.load_backbone`). A C2F-TCN is written as
a run directory (`config.json` + `best/` checkpoint with params and
batch_stats) that `--config.teacher_workdir` accepts; it computes what the
published PyTorch model computes, at every length (docs/model.md).

An `--out` that already holds files is refused; `--overwrite` replaces it,
but only once the new output is completely written (into a sibling folder,
then swapped in), so a failed import leaves the old one as it was.

`.pth`/`.pt` files need torch; `.safetensors` files need only `safetensors`.
"""

from __future__ import annotations

from absl import app
from absl import flags

from exo2ego_jax.interop import importer
from exo2ego_jax.runtime import cli


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  print(
    importer.import_checkpoint(
      f.checkpoint, f.format, f.out, f.overwrite, f.num_heads
    )
  )


def define_flags() -> None:
  """Flags are defined when this runs as the command, not on import."""
  flags.DEFINE_string(
    "checkpoint", None, "PyTorch .pth/.pt or .safetensors file.", required=True
  )
  flags.DEFINE_enum(
    "format", None, importer.FORMATS, "Layout of the checkpoint.", required=True
  )
  flags.DEFINE_string("out", None, "Output directory.", required=True)
  flags.DEFINE_bool(
    "overwrite",
    False,
    "Replace an --out that already holds files (only once "
    "the new output is complete).",
  )
  flags.DEFINE_integer(
    "num_heads", None, "Attention heads (DINOv2; default embed_dim / 64)."
  )


if __name__ == "__main__":
  define_flags()
  cli.run(main)
