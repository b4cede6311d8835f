"""C2F-TCN and its training steps in PyTorch, the comparison point of
`step_throughput.py`.

Written from the design brief (section 3) like `exo2ego_jax.models.c2f_tcn`,
layer for layer, channels-first (B, D, T): double_conv = (Conv k5 pad 2 - BN -
ReLU) x 2; six max-pool levels with 256, 256, 256, 128, 128, 128, 128
channels; TPP (max-pool 2, 3, 5, 6, one shared 1x1 conv, linear upsampling
with aligned corners); a decoder of six up stages; heads y1..y5 on relu(x)
and y; the ensemble is the mean of the six heads' softmaxes. The input is
padded to the same internal length as the JAX model (a multiple of 64, at
least 384) and padded frames are zeroed after every ReLU. One difference:
BatchNorm here is PyTorch's plain BatchNorm1d (statistics over all frames,
padding included, as the public reference), where the JAX model uses masked
statistics (a little more work).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

ENCODER_FEATURES = (256, 256, 256, 128, 128, 128, 128)
DECODER_FEATURES = 128
TPP_POOL_SIZES = (2, 3, 5, 6)
NUM_LEVELS = len(ENCODER_FEATURES) - 1
MIN_PADDED_LENGTH = 2**NUM_LEVELS * max(TPP_POOL_SIZES)
IGNORE_LABEL = -100
DISTILL_HEADS = (4, 3, 2, 1)  # y5, y4, y3, y2 (indices into y1..y5)


def padded_length(length: int) -> int:
  step = 2**NUM_LEVELS
  return max(-(-length // step) * step, MIN_PADDED_LENGTH)


def upsample(x: torch.Tensor, length: int) -> torch.Tensor:
  if x.shape[-1] == length:
    return x
  return F.interpolate(x, size=length, mode="linear", align_corners=True)


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
        for i in range(len(ENCODER_FEATURES)))
    self.tpp_project = nn.Conv1d(ENCODER_FEATURES[-1], 1, 1)
    below = ENCODER_FEATURES[-1] + len(TPP_POOL_SIZES)
    decoder = []
    for level in range(NUM_LEVELS - 1, -1, -1):  # with x6 .. x1
      decoder.append(DoubleConv(ENCODER_FEATURES[level] + below,
                                DECODER_FEATURES))
      below = DECODER_FEATURES
    self.decoder = nn.ModuleList(decoder)
    self.heads = nn.ModuleList(nn.Conv1d(DECODER_FEATURES, num_classes, 1)
                               for _ in range(NUM_LEVELS))  # y1..y5, y

  def forward(self, x: torch.Tensor, mask: torch.Tensor
              ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(B, D, T) features, (B, T) mask -> logits of y1..y5, y at their own
    resolution (padded), and the masks at those resolutions."""
    length = x.shape[-1]
    pad = padded_length(length) - length
    mask = F.pad(mask, (0, pad))[:, None]
    x = F.pad(x, (0, pad)) * mask
    skips, masks = [], []
    for level, block in enumerate(self.encoder):
      if level:
        x = F.max_pool1d(x, 2)
        mask = F.max_pool1d(mask, 2)
      x = block(x, mask)
      skips.append(x)
      masks.append(mask)
    maps = [upsample(self.tpp_project(F.max_pool1d(x, k)), x.shape[-1])
            for k in TPP_POOL_SIZES]
    x = torch.cat(maps + [x], dim=1)
    logits, head_masks = [], []
    for stage, block in enumerate(self.decoder):
      level = NUM_LEVELS - 1 - stage
      up = upsample(x, 2 * x.shape[-1])
      up = F.pad(up, (0, skips[level].shape[-1] - up.shape[-1]))
      x = block(torch.cat([skips[level], up], dim=1), masks[level])
      last = stage == len(self.decoder) - 1
      logits.append(self.heads[stage](x if last else F.relu(x)))
      head_masks.append(masks[level][:, 0])
    return logits, head_masks


def ensemble_probs(logits: list[torch.Tensor], length: int) -> torch.Tensor:
  """Mean of the six heads' softmaxes, each upsampled to (B, C, length)."""
  full = logits[-1].shape[-1]
  probs = [F.softmax(upsample(h, full)[..., :length], dim=1) for h in logits]
  return sum(probs) / len(probs)


def supervised_loss(probs: torch.Tensor, labels: torch.Tensor,
                    mask: torch.Tensor, smooth_weight: float = 0.17
                    ) -> torch.Tensor:
  """CE on log(ensemble + 1e-10) + 0.17 * truncated smoothing (masked)."""
  log_probs = torch.log(probs + 1e-10)
  valid = (labels != IGNORE_LABEL) & (mask > 0)
  ce = F.nll_loss(log_probs, torch.where(valid, labels, IGNORE_LABEL),
                  ignore_index=IGNORE_LABEL)
  diff = log_probs[..., 1:] - log_probs[..., :-1].detach()
  per_pair = torch.clamp(diff**2, 0, 16).mean(dim=1)
  pair_valid = ((mask[:, 1:] > 0) & (mask[:, :-1] > 0)).float()
  smooth = (per_pair * pair_valid).sum() / pair_valid.sum().clamp(min=1)
  return ce + smooth_weight * smooth


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor
               ) -> torch.Tensor:
  per_frame = ((a - b) ** 2).mean(dim=1)
  return (per_frame * mask).sum() / mask.sum().clamp(min=1)


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
  """The reference optimiser: Adam, lr 1e-5, L2 weight decay 1e-4."""
  return torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=1e-4)


def train_step(model: C2FTCN, optimizer: torch.optim.Optimizer, batch: dict
               ) -> torch.Tensor:
  """One supervised step on batch (x (B, D, T), labels (B, T), mask)."""
  model.train()
  optimizer.zero_grad(set_to_none=True)
  logits, _ = model(batch["x"], batch["mask"])
  probs = ensemble_probs(logits, batch["x"].shape[-1])
  loss = supervised_loss(probs, batch["labels"], batch["mask"])
  loss.backward()
  optimizer.step()
  return loss.detach()


def distill_step(student: C2FTCN, teacher: C2FTCN,
                 optimizer: torch.optim.Optimizer, batch: dict
                 ) -> torch.Tensor:
  """One model-distillation step: the frozen teacher (eval mode) on exo, the
  student on ego, MSE between the logits of heads y5, y4, y3, y2."""
  student.train()
  teacher.eval()
  optimizer.zero_grad(set_to_none=True)
  with torch.no_grad():
    teacher_logits, _ = teacher(batch["exo"], batch["mask"])
  logits, masks = student(batch["ego"], batch["mask"])
  loss = sum(masked_mse(logits[i], teacher_logits[i], masks[i])
             for i in DISTILL_HEADS)
  loss.backward()
  optimizer.step()
  return loss.detach()
