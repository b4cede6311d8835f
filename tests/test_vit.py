"""DINOv2 ViT: shapes, registers, position-embedding resizing, and parity
with PyTorch (Hugging Face `Dinov2Model`s and the original release's module
layout) after converting their weights. Every model here is tiny."""

import math
import re

import jax
import numpy as np
import pytest

from exo2ego_jax.interop import dinov2
from exo2ego_jax.interop import state_dicts
from exo2ego_jax.models import vit

TINY = dict(embed_dim=32, depth=2, num_heads=4, pos_embed_grid=4)


def _images(size, batch=2, seed=0):
  height, width = size
  return (
    np.random.default_rng(seed)
    .normal(size=(batch, height, width, 3))
    .astype(np.float32)
  )


@pytest.mark.parametrize("registers", [0, 3])
def test_shapes_and_register_tokens(registers):
  model = vit.ViT(**TINY, num_register_tokens=registers)
  images = _images((56, 70))
  params = vit.random_params(model, seed=0)  # the init's shapes, no compile
  out = jax.jit(model.apply)({"params": params}, images)
  assert out["cls"].shape == (2, 32)
  assert out["patch_tokens"].shape == (2, 4 * 5, 32)
  assert out["register_tokens"].shape == (2, registers, 32)
  assert ("register_tokens" in params) == bool(registers)
  assert params["pos_embed"].shape == (1, 1 + 16, 32)
  # Outputs come after the final LayerNorm (unit scale, zero bias at init).
  np.testing.assert_allclose(
    np.asarray(out["patch_tokens"]).std(-1), 1.0, rtol=1e-2
  )


def test_named_sizes():
  model = vit.vit_from_name("vit_giant2", num_register_tokens=4)
  assert (model.embed_dim, model.depth, model.num_heads, model.ffn) == (
    1536,
    40,
    24,
    "swiglu",
  )
  assert model.embed_dim // model.num_heads == 64
  with pytest.raises(ValueError, match="unknown ViT size"):
    vit.vit_from_name("vit_huge")


def test_swiglu_width_matches_dinov2():
  model = vit.ViT(
    embed_dim=48, depth=1, num_heads=4, ffn="swiglu", pos_embed_grid=2
  )
  params = jax.eval_shape(model.init, jax.random.key(0), _images((28, 28), 1))[
    "params"
  ]
  # (int(48 * 4 * 2 / 3) + 7) // 8 * 8 = 128 gate + 128 up units.
  assert params["block0"]["mlp"]["w12"]["kernel"].shape == (48, 256)
  assert params["block0"]["mlp"]["w3"]["kernel"].shape == (128, 48)


def test_pos_embed_resize_is_identity_at_the_trained_grid():
  table = jax.random.normal(jax.random.key(0), (1, 16, 8))
  same = vit.resize_pos_embed(table, (4, 4), offset=0.0)
  np.testing.assert_allclose(same, table, atol=1e-6)
  rows = vit.bicubic_matrix(4, 7)
  np.testing.assert_allclose(rows.sum(1), 1.0, atol=1e-12)  # constants stay
  bigger = vit.resize_pos_embed(table, (7, 5), offset=0.1)
  assert bigger.shape == (1, 35, 8)


@pytest.mark.parametrize(
  "in_size,out_size,offset,antialias",
  [
    (4, 6, 0.0, False),
    (4, 3, 0.1, False),
    (37, 16, 0.1, False),
    (37, 16, 0.0, True),
    (4, 6, 0.0, True),
    (5, 2, 0.0, True),
  ],
)
def test_bicubic_matches_torch_interpolate(
  in_size, out_size, offset, antialias
):
  torch = pytest.importorskip("torch")
  x = torch.randn(
    1,
    1,
    in_size,
    in_size,
    dtype=torch.float64,
    generator=torch.Generator().manual_seed(in_size),
  )
  kwargs = (
    dict(scale_factor=((out_size + offset) / in_size,) * 2)
    if offset
    else dict(size=(out_size, out_size))
  )
  want = torch.nn.functional.interpolate(
    x, mode="bicubic", antialias=antialias, **kwargs
  )
  m = vit.bicubic_matrix(
    in_size,
    out_size,
    (out_size + offset) / in_size if offset else None,
    antialias,
  )
  np.testing.assert_allclose(
    m @ x.numpy()[0, 0] @ m.T, want.numpy()[0, 0], atol=1e-12
  )


# ----- Parity with PyTorch. -----


def _randomise(module, seed):
  """Random values everywhere (LayerNorm, LayerScale, tokens included) so a
  wrong mapping of any tensor shows."""
  import torch  # pylint: disable=g-import-not-at-top

  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in module.named_parameters():
      p.copy_(
        torch.randn(p.shape, generator=gen) * 0.1
        + (
          1.0
          if name.endswith(
            ("norm1.weight", "norm2.weight", "norm.weight", "layernorm.weight")
          )
          else 0.0
        )
      )
  return module.eval()


def _flax_features(params, config, images):
  return jax.jit(vit.ViT(**config).apply)({"params": params}, images)


def _assert_matches(ours, cls, patches, registers=None):
  np.testing.assert_allclose(ours["cls"], cls, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(
    ours["patch_tokens"], patches, atol=1e-5, rtol=1e-5
  )
  if registers is not None:
    np.testing.assert_allclose(
      ours["register_tokens"], registers, atol=1e-5, rtol=1e-5
    )


def _hf_model(registers, swiglu):
  transformers = pytest.importorskip("transformers")
  pytest.importorskip("torch")
  kwargs = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=56,
    patch_size=14,
    use_swiglu_ffn=swiglu,
  )
  if registers:
    model = transformers.Dinov2WithRegistersModel(
      transformers.Dinov2WithRegistersConfig(
        num_register_tokens=registers, **kwargs
      )
    )
  else:
    model = transformers.Dinov2Model(transformers.Dinov2Config(**kwargs))
  return _randomise(model, seed=registers + 2 * swiglu)


def _hf_outputs(model, images, registers):
  import torch  # pylint: disable=g-import-not-at-top

  with torch.no_grad():
    hidden = model(
      pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2))
    ).last_hidden_state.numpy()
  return hidden[:, 0], hidden[:, 1 + registers :], hidden[:, 1 : 1 + registers]


def _legacy_hub_names(state):
  """transformers 5 names -> the names in the hub's checkpoint files."""
  legacy = {}
  for key, value in state.items():
    key = (
      key.replace("attention.q_proj", "attention.attention.query")
      .replace("attention.k_proj", "attention.attention.key")
      .replace("attention.v_proj", "attention.attention.value")
      .replace("attention.o_proj", "attention.output.dense")
      .replace("mlp.down_proj", "mlp.weights_out")
    )
    if "mlp.up_proj" in key:
      continue
    if "mlp.gate_proj" in key:
      up = state[key.replace("gate_proj", "up_proj")]
      key, value = (
        key.replace("gate_proj", "weights_in"),
        np.concatenate([value, up]),
      )
    legacy[key] = value
  return legacy


@pytest.mark.parametrize("registers,swiglu", [(0, False), (2, True)])
def test_hugging_face_parity(registers, swiglu):
  model = _hf_model(registers, swiglu)
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  params, config = dinov2.convert_dinov2(state, "hf", num_heads=4)
  assert config["ffn"] == ("swiglu" if swiglu else "mlp")
  assert config["num_register_tokens"] == registers
  # The hub files' names give the same tree.
  legacy, _ = dinov2.convert_dinov2(_legacy_hub_names(state), "hf", num_heads=4)
  jax.tree.map(np.testing.assert_array_equal, legacy, params)
  # 56: the trained 4x4 grid; 84x70 and 42x42 resample positions (up, and
  # down antialiased for register models; the bicubic test checks the
  # other combinations against torch directly).
  for size in [(56, 56), (42, 42) if registers else (84, 70)]:
    images = _images(size, seed=sum(size))
    _assert_matches(
      _flax_features(params, config, images),
      *_hf_outputs(model, images, registers),
    )


def _original_dinov2(
  dim, depth, heads, grid, registers, swiglu, offset, antialias
):
  """The original release's DinoVisionTransformer (inference path), written
  with its module and parameter names."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  f = nn.functional

  class LayerScale(nn.Module):
    def __init__(self):
      super().__init__()
      self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
      return x * self.gamma

  class Attention(nn.Module):
    def __init__(self):
      super().__init__()
      self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
      b, n, c = x.shape
      qkv = (
        self.qkv(x).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
      )
      q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
      attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
      return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

  class Mlp(nn.Module):
    def __init__(self):
      super().__init__()
      self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
      return self.fc2(f.gelu(self.fc1(x)))

  class SwiGLUFFNFused(nn.Module):
    def __init__(self):
      super().__init__()
      hidden = (int(4 * dim * 2 / 3) + 7) // 8 * 8
      self.w12, self.w3 = nn.Linear(dim, 2 * hidden), nn.Linear(hidden, dim)

    def forward(self, x):
      x1, x2 = self.w12(x).chunk(2, dim=-1)
      return self.w3(f.silu(x1) * x2)

  class Block(nn.Module):
    def __init__(self):
      super().__init__()
      self.norm1, self.norm2 = (
        nn.LayerNorm(dim, eps=1e-6),
        nn.LayerNorm(dim, eps=1e-6),
      )
      self.attn, self.ls1, self.ls2 = Attention(), LayerScale(), LayerScale()
      self.mlp = SwiGLUFFNFused() if swiglu else Mlp()

    def forward(self, x):
      x = x + self.ls1(self.attn(self.norm1(x)))
      return x + self.ls2(self.mlp(self.norm2(x)))

  class PatchEmbed(nn.Module):
    def __init__(self):
      super().__init__()
      self.proj = nn.Conv2d(3, dim, 14, 14)

    def forward(self, x):
      return self.proj(x).flatten(2).transpose(1, 2)

  class DinoVisionTransformer(nn.Module):
    def __init__(self):
      super().__init__()
      self.patch_embed = PatchEmbed()
      self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
      self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
      if registers:
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, dim))
      self.blocks = nn.ModuleList([Block() for _ in range(depth)])
      self.norm = nn.LayerNorm(dim, eps=1e-6)
      self.mask_token = nn.Parameter(torch.zeros(1, dim))

    def interpolate_pos_encoding(self, x, w, h):
      npatch, n = x.shape[1] - 1, self.pos_embed.shape[1] - 1
      if npatch == n and w == h:
        return self.pos_embed
      m, w0, h0 = int(math.sqrt(n)), w // 14, h // 14
      kwargs = (
        {"scale_factor": ((w0 + offset) / m, (h0 + offset) / m)}
        if offset
        else {"size": (w0, h0)}
      )
      patch_pos = f.interpolate(
        self.pos_embed[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2),
        mode="bicubic",
        antialias=antialias,
        **kwargs,
      )
      patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
      return torch.cat((self.pos_embed[:, :1], patch_pos), dim=1)

    def forward(self, x):
      _, _, w, h = x.shape
      x = self.patch_embed(x)
      x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
      x = x + self.interpolate_pos_encoding(x, w, h)
      if registers:
        x = torch.cat(
          (x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]),
          dim=1,
        )
      for block in self.blocks:
        x = block(x)
      x = self.norm(x)
      return x[:, 0], x[:, 1 + registers :], x[:, 1 : 1 + registers]

  return DinoVisionTransformer()


@pytest.mark.parametrize(
  "registers,swiglu,chunked", [(0, False, False), (4, True, True)]
)
def test_original_release_parity(registers, swiglu, chunked):
  torch = pytest.importorskip("torch")
  # As the hub builds them: +0.1 offset without registers, exact size and
  # antialiasing with registers.
  offset, antialias = (0.0, True) if registers else (0.1, False)
  model = _randomise(
    _original_dinov2(64, 2, 4, 4, registers, swiglu, offset, antialias),
    seed=7 + registers,
  )
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  assert {
    "cls_token",
    "pos_embed",
    "patch_embed.proj.weight",
    "blocks.0.attn.qkv.weight",
    "blocks.0.ls1.gamma",
    "norm.weight",
    "mask_token",
  } <= set(state)
  if chunked:  # FSDP training checkpoints: blocks.<chunk>.<index>.*
    # One block per chunk: chunk i holds i Identity layers, then block i.
    state = {
      "backbone." + re.sub(r"^blocks\.(\d+)\.", r"blocks.\1.\1.", k): v
      for k, v in state.items()
    }
  params, config = dinov2.convert_dinov2(state, "dinov2", num_heads=4)
  assert (config["interpolate_offset"], config["interpolate_antialias"]) == (
    offset,
    antialias,
  )
  for size in [(56, 56), (42, 42) if registers else (70, 98)]:
    images = _images(size, seed=size[1])
    with torch.no_grad():
      want = [
        t.numpy() for t in model(torch.from_numpy(images.transpose(0, 3, 1, 2)))
      ]
    _assert_matches(_flax_features(params, config, images), *want)


def test_format_mistakes_are_named():
  pytest.importorskip("torch")
  model = _hf_model(0, False)
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  with pytest.raises(ValueError, match="--format hf"):
    dinov2.convert_dinov2(state, "dinov2")
  with pytest.raises(ValueError, match="not Hugging Face"):
    dinov2.convert_dinov2(
      {"cls_token": state["embeddings.cls_token"], "head.weight": np.zeros(3)},
      "hf",
    )


def test_cli_round_trip(tmp_path):
  torch = pytest.importorskip("torch")
  model = _hf_model(0, False)
  checkpoint = tmp_path / "hf.pth"
  torch.save({"model": model.state_dict()}, checkpoint)
  state = state_dicts.load_state_dict(str(checkpoint))
  params, config = dinov2.convert_dinov2(state, "hf", num_heads=4)
  dinov2.save_backbone(str(tmp_path / "out"), params, config)
  loaded_model, loaded = dinov2.load_backbone(str(tmp_path / "out"))
  assert vit.config_of(loaded_model) == config
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  images = _images((56, 56))
  _assert_matches(
    jax.jit(loaded_model.apply)({"params": loaded}, images),
    *_hf_outputs(model, images, 0)[:2],
  )
