"""A PyTorch C2F-TCN with the published model's semantics, the reference of
tests/test_c2f_tcn.py and tests/test_c2f_import.py.

Written from the published behaviour (docs/model.md), not copied: floor
max-pooling at every level, a pyramid that pools the bottleneck by 2, 3, 5, 6
and interpolates each 1-channel map back with aligned corners, decoder stages
that upsample x2 with aligned corners and zero-pad on the right to the skip's
length, and an ensemble that interpolates every head to the input length with
aligned corners. Its modules carry the public checkpoint's names (`inc`,
`down1..6`, `tpp`, `up`, `up0..4`, `outcc0..4`, `outcc`, and `weights`), so
its state dict has the keys `import_weights --format c2f_tcn` reads. It runs
one unpadded length per call, as the published model does.

`valid=L` adds our rule for windows under 384 frames (docs/model.md): the
input is the window zero-padded to 384 frames, and at every level the steps
past ceil(L / 2^level) are held at zero after every layer.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def _keep(x: torch.Tensor, steps) -> torch.Tensor:
  """x with every step from `steps` on zeroed (all kept if None)."""
  if steps is None:
    return x
  return x * (torch.arange(x.shape[-1]) < steps).float()


class _DoubleConv(nn.Module):
  """`.conv` = (Conv1d k5 pad 2, BatchNorm1d, ReLU) x 2 (keys .0/.1/.3/.4)."""

  def __init__(self, in_channels: int, out_channels: int):
    super().__init__()
    self.conv = nn.Sequential(
      nn.Conv1d(in_channels, out_channels, 5, padding=2),
      nn.BatchNorm1d(out_channels),
      nn.ReLU(),
      nn.Conv1d(out_channels, out_channels, 5, padding=2),
      nn.BatchNorm1d(out_channels),
      nn.ReLU(),
    )

  def forward(self, x: torch.Tensor, steps=None) -> torch.Tensor:
    for layer in self.conv:
      x = layer(x)
      if isinstance(layer, nn.ReLU):
        x = _keep(x, steps)
    return x


def _wrap(**children) -> nn.Module:
  module = nn.Module()
  for name, child in children.items():
    setattr(module, name, child)
  return module


def _linear(x: torch.Tensor, length: int) -> torch.Tensor:
  return F.interpolate(x, size=length, mode="linear", align_corners=True)


class PublishedC2FTCN(nn.Module):
  """(B, D, T) -> (y, [y5, y4, y3, y2, y1], decoder features), like the
  public model's forward."""

  def __init__(self, feature_dim: int, num_classes: int):
    super().__init__()
    self.inc = _wrap(conv=_DoubleConv(feature_dim, 256))
    encoder = (256, 256, 256, 128, 128, 128, 128)
    for i in range(1, 7):
      setattr(
        self,
        f"down{i}",
        _wrap(
          max_pool_conv=nn.Sequential(
            nn.MaxPool1d(2), _DoubleConv(encoder[i - 1], encoder[i])
          )
        ),
      )
    self.tpp = _wrap(conv=nn.Conv1d(128, 1, 1))
    # Decoder input channels: skip + upsampled, from x6 down to x1.
    for name, channels in zip(
      ("up", "up0", "up1", "up2", "up3", "up4"), (260, 256, 256, 384, 384, 384)
    ):
      setattr(self, name, _wrap(conv=_DoubleConv(channels, 128)))
    for i in range(5):
      setattr(self, f"outcc{i}", _wrap(conv=nn.Conv1d(128, num_classes, 1)))
    self.outcc = _wrap(conv=nn.Conv1d(128, num_classes, 1))
    self.weights = nn.Parameter(torch.ones(6))  # unused, as published

  def pyramid(self, x: torch.Tensor, steps=None) -> torch.Tensor:
    length = x.shape[-1]
    maps = [
      _keep(_linear(self.tpp.conv(F.max_pool1d(x, k, k)), length), steps)
      for k in (2, 3, 5, 6)
    ]
    return torch.cat(maps + [x], dim=1)

  def forward(self, x: torch.Tensor, valid: int | None = None):
    # Steps per level that hold data (all of them without `valid`).
    steps = [None if valid is None else -(-valid // 2**k) for k in range(7)]
    skips = [self.inc.conv(x, steps[0])]
    for i in range(1, 7):
      pool, block = getattr(self, f"down{i}").max_pool_conv
      skips.append(block(_keep(pool(skips[-1]), steps[i]), steps[i]))
    x = self.pyramid(skips.pop(), steps[6])
    heads = []
    for stage, name in enumerate(("up", "up0", "up1", "up2", "up3", "up4")):
      skip = skips.pop()
      up = F.interpolate(x, scale_factor=2, mode="linear", align_corners=True)
      diff = skip.shape[-1] - up.shape[-1]
      up = _keep(F.pad(up, [diff // 2, diff - diff // 2]), steps[5 - stage])
      x = getattr(self, name).conv(
        torch.cat([skip, up], dim=1), steps[5 - stage]
      )
      if stage < 5:
        heads.append(getattr(self, f"outcc{stage}").conv(F.relu(x)))
    return self.outcc.conv(x), heads[::-1], x


def ensemble(y: torch.Tensor, heads, weights=(1.0,) * 6) -> torch.Tensor:
  """The published ensemble: weights[0] for y, then y5..y1, each head
  interpolated to y's length before its softmax."""
  total = sum(weights)
  probs = F.softmax(y, dim=1) * weights[0] / total
  for weight, head in zip(weights[1:], heads):
    probs = probs + F.softmax(_linear(head, y.shape[-1]), dim=1) * (
      weight / total
    )
  return probs


def build(feature_dim: int, num_classes: int, seed: int = 0) -> PublishedC2FTCN:
  """The model in eval mode with trained-like BatchNorm: random affines and
  running statistics. Seeded without touching torch's global RNG."""
  with torch.random.fork_rng():
    torch.manual_seed(seed)
    model = PublishedC2FTCN(feature_dim, num_classes)
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.BatchNorm1d):
        shape = module.running_mean.shape
        module.running_mean.copy_(torch.randn(shape, generator=gen) * 0.1)
        module.running_var.copy_(torch.rand(shape, generator=gen) + 0.5)
        module.weight.copy_(torch.rand(shape, generator=gen) + 0.5)
        module.bias.copy_(torch.randn(shape, generator=gen) * 0.1)
  return model.eval()


def state_dict(model: nn.Module) -> dict[str, np.ndarray]:
  return {k: v.numpy() for k, v in model.state_dict().items()}


def outputs(
  model: PublishedC2FTCN, x: np.ndarray, valid: int | None = None
) -> dict:
  """Every output of `model` on channels-last x (B, T, D), channels-last:
  logits, features, head_logits (y1..y5) and the uniform ensemble."""
  channels_last = lambda t: t.numpy().transpose(0, 2, 1)
  with torch.no_grad():
    y, heads, features = model(torch.from_numpy(x.transpose(0, 2, 1)), valid)
    probs = ensemble(y, heads)
  return {
    "logits": channels_last(y),
    "features": channels_last(features),
    "head_logits": [channels_last(h) for h in heads[::-1]],
    "ensemble": channels_last(probs),
  }
