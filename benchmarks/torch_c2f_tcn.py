"""C2F-TCN and its training steps in PyTorch, the comparison point of
`step_throughput.py`.

Written from the design brief (section 3) like `exo2ego_jax.models.c2f_tcn`,
layer for layer, channels-first (B, D, T): double_conv = (Conv k5 pad 2 - BN -
ReLU) x 2; six max-pool levels with 256, 256, 256, 128, 128, 128, 128
channels; TPP (max-pool 2, 3, 5, 6, one shared 1x1 conv, linear upsampling
with aligned corners); a decoder of six up stages; heads y1..y5 on relu(x)
and y; the ensemble is the mean of the six heads' softmaxes. Lengths are the
JAX model's (docs/model.md): each example runs at its own length (its mask's
leading valid frames), every pooling floors, interpolation weights are
per-example, steps past an example's length are zeroed after every layer,
and a window shorter than 384 frames runs as if zero-padded to 384 with the
padding masked.
One difference: BatchNorm here is PyTorch's plain BatchNorm1d (training
statistics over all steps, padding included, as the published model), where
the JAX model uses masked statistics (a little more work).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

ENCODER_FEATURES = (256, 256, 256, 128, 128, 128, 128)
DECODER_FEATURES = 128
TPP_POOL_SIZES = (2, 3, 5, 6)
NUM_LEVELS = len(ENCODER_FEATURES) - 1
MIN_LENGTH = 2**NUM_LEVELS * max(TPP_POOL_SIZES)
IGNORE_LABEL = -100
DISTILL_HEADS = (4, 3, 2, 1)  # y5, y4, y3, y2 (indices into y1..y5)


def level_lengths(
  lengths: torch.Tensor, level: int
) -> tuple[torch.Tensor, torch.Tensor]:
  """(steps, valid) of `level` per example, as c2f_tcn.level_lengths."""
  steps = lengths.clamp(min=MIN_LENGTH) >> level
  valid = torch.minimum((lengths + (1 << level) - 1) >> level, steps)
  return steps, valid


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
  """(B, 1, size) float mask of each example's first lengths[b] steps."""
  return (torch.arange(size)[None] < lengths[:, None]).float()[:, None]


def interpolate(
  x: torch.Tensor,
  in_lengths: torch.Tensor,
  out_lengths: torch.Tensor,
  factor: int,
  out_size: int,
) -> torch.Tensor:
  """Per-example aligned-corners linear resampling along the last axis, by
  four weighted shifts of x repeated `factor` times (c2f_tcn.interpolate)."""
  n = in_lengths.float()[:, None]
  m = out_lengths[:, None]
  scale = torch.where(
    m > 1, (n - 1) / (m - 1).clamp(min=1).float(), torch.zeros(())
  )
  step = torch.arange(out_size)
  pos = step.float()[None] * scale
  lo = torch.minimum(torch.floor(pos), (n - 2).clamp(min=0)).clamp(min=0)
  frac = pos - lo
  tap = lo.long() - (step // factor)[None]
  inside = step[None] < m
  repeated = F.pad(x, (2, 2)).repeat_interleave(factor, dim=-1)
  zero = torch.zeros(())
  out = 0.0
  for offset in (-2, -1, 0, 1):
    weight = torch.where(tap == offset, 1.0 - frac, zero) + torch.where(
      tap + 1 == offset, frac, zero
    )
    weight = torch.where(inside, weight, zero)[:, None]
    start = (offset + 2) * factor
    out = out + weight * repeated[..., start : start + out_size]
  return out


class DoubleConv(nn.Module):
  def __init__(self, in_channels: int, out_channels: int):
    super().__init__()
    self.conv0 = nn.Conv1d(in_channels, out_channels, 5, padding=2)
    self.bn0 = nn.BatchNorm1d(out_channels)
    self.conv1 = nn.Conv1d(out_channels, out_channels, 5, padding=2)
    self.bn1 = nn.BatchNorm1d(out_channels)

  def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.bn0(self.conv0(x))) * mask
    return F.relu(self.bn1(self.conv1(x))) * mask


class C2FTCN(nn.Module):
  def __init__(self, feature_dim: int, num_classes: int):
    super().__init__()
    channels = (feature_dim,) + ENCODER_FEATURES
    self.encoder = nn.ModuleList(
      DoubleConv(channels[i], channels[i + 1])
      for i in range(len(ENCODER_FEATURES))
    )
    self.tpp_project = nn.Conv1d(ENCODER_FEATURES[-1], 1, 1)
    below = ENCODER_FEATURES[-1] + len(TPP_POOL_SIZES)
    decoder = []
    for level in range(NUM_LEVELS - 1, -1, -1):  # with x6 .. x1
      decoder.append(
        DoubleConv(ENCODER_FEATURES[level] + below, DECODER_FEATURES)
      )
      below = DECODER_FEATURES
    self.decoder = nn.ModuleList(decoder)
    self.heads = nn.ModuleList(
      nn.Conv1d(DECODER_FEATURES, num_classes, 1) for _ in range(NUM_LEVELS)
    )  # y1..y5, y

  def forward(
    self, x: torch.Tensor, mask: torch.Tensor
  ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(B, D, T) features, (B, T) mask of leading valid frames -> logits of
    y1..y5, y at their own resolution (of max(T, 384) steps), and the masks
    of their valid steps."""
    length = x.shape[-1]
    lengths = (mask > 0).sum(1)
    size = max(length, MIN_LENGTH)
    x = F.pad(x * length_mask(lengths, length), (0, size - length))
    skips, masks = [], []
    for level, block in enumerate(self.encoder):
      mask = length_mask(level_lengths(lengths, level)[1], size >> level)
      if level:
        x = F.max_pool1d(x, 2) * mask
      x = block(x, mask)
      skips.append(x)
      masks.append(mask)
    bottom, _ = level_lengths(lengths, NUM_LEVELS)
    maps = [
      interpolate(
        self.tpp_project(F.max_pool1d(x, k)),
        bottom // k,
        bottom,
        k,
        x.shape[-1],
      )
      * mask
      for k in TPP_POOL_SIZES
    ]
    x = torch.cat(maps + [x], dim=1)
    logits, head_masks = [], []
    for stage, block in enumerate(self.decoder):
      level = NUM_LEVELS - 1 - stage
      below, _ = level_lengths(lengths, level + 1)
      up = interpolate(x, below, 2 * below, 2, skips[level].shape[-1])
      x = block(
        torch.cat([skips[level], up * masks[level]], dim=1), masks[level]
      )
      last = stage == len(self.decoder) - 1
      logits.append(self.heads[stage](x if last else F.relu(x)))
      head_masks.append(masks[level][:, 0])
    return logits, head_masks


def ensemble_probs(
  logits: list[torch.Tensor], length: int, lengths: torch.Tensor | None = None
) -> torch.Tensor:
  """Mean of the six heads' softmaxes (B, C, length), each head upsampled
  to its example's run length. `lengths`: valid frames per example (default:
  all `length`)."""
  size = logits[-1].shape[-1]
  if lengths is None:
    lengths = torch.full((logits[-1].shape[0],), length)
  run = lengths.clamp(min=MIN_LENGTH)
  probs = []
  for level, head in zip(range(NUM_LEVELS - 1, 0, -1), logits):
    up = interpolate(head, run >> level, run, 1 << level, size)
    probs.append(F.softmax(up[..., :length], dim=1))
  probs.append(F.softmax(logits[-1][..., :length], dim=1))
  return sum(probs) / len(probs)


def supervised_loss(
  probs: torch.Tensor,
  labels: torch.Tensor,
  mask: torch.Tensor,
  smooth_weight: float = 0.17,
) -> torch.Tensor:
  """CE on log(ensemble + 1e-10) + 0.17 * truncated smoothing (masked)."""
  log_probs = torch.log(probs + 1e-10)
  valid = (labels != IGNORE_LABEL) & (mask > 0)
  ce = F.nll_loss(
    log_probs,
    torch.where(valid, labels, IGNORE_LABEL),
    ignore_index=IGNORE_LABEL,
  )
  diff = log_probs[..., 1:] - log_probs[..., :-1].detach()
  per_pair = torch.clamp(diff**2, 0, 16).mean(dim=1)
  pair_valid = ((mask[:, 1:] > 0) & (mask[:, :-1] > 0)).float()
  smooth = (per_pair * pair_valid).sum() / pair_valid.sum().clamp(min=1)
  return ce + smooth_weight * smooth


def masked_mse(
  a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
  per_frame = ((a - b) ** 2).mean(dim=1)
  return (per_frame * mask).sum() / mask.sum().clamp(min=1)


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
  """The reference optimiser: Adam, lr 1e-5, L2 weight decay 1e-4."""
  return torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=1e-4)


def train_step(
  model: C2FTCN, optimizer: torch.optim.Optimizer, batch: dict
) -> torch.Tensor:
  """One supervised step on batch (x (B, D, T), labels (B, T), mask)."""
  model.train()
  optimizer.zero_grad(set_to_none=True)
  logits, _ = model(batch["x"], batch["mask"])
  probs = ensemble_probs(
    logits, batch["x"].shape[-1], (batch["mask"] > 0).sum(1)
  )
  loss = supervised_loss(probs, batch["labels"], batch["mask"])
  loss.backward()
  optimizer.step()
  return loss.detach()


def distill_step(
  student: C2FTCN,
  teacher: C2FTCN,
  optimizer: torch.optim.Optimizer,
  batch: dict,
) -> torch.Tensor:
  """One model-distillation step: the frozen teacher (eval mode) on exo, the
  student on ego, MSE between the logits of heads y5, y4, y3, y2."""
  student.train()
  teacher.eval()
  optimizer.zero_grad(set_to_none=True)
  with torch.no_grad():
    teacher_logits, _ = teacher(batch["exo"], batch["mask"])
  logits, masks = student(batch["ego"], batch["mask"])
  loss = sum(
    masked_mse(logits[i], teacher_logits[i], masks[i]) for i in DISTILL_HEADS
  )
  loss.backward()
  optimizer.step()
  return loss.detach()
