"""Importing PyTorch C2F-TCN checkpoints: our C2FTCN with converted weights
computes what the public PyTorch C2F_TCN computes (eval mode)."""

import jax
import numpy as np
import pytest

from exo2ego_jax import checkpoints
from exo2ego_jax import import_weights
from exo2ego_jax import trainer
from exo2ego_jax.models import c2f_tcn

FEATURES, CLASSES = 12, 5


def _public_c2f_tcn():
  """dipika-singhania/C2F-TCN model.py's C2F_TCN, with its module names (so
  its state dict has the public keys), without the torchvision import."""
  torch = pytest.importorskip("torch")
  from torch import nn  # pylint: disable=g-import-not-at-top
  f = nn.functional

  class double_conv(nn.Module):  # pylint: disable=invalid-name
    def __init__(self, in_ch, out_ch):
      super().__init__()
      self.conv = nn.Sequential(
          nn.Conv1d(in_ch, out_ch, kernel_size=5, padding=2),
          nn.BatchNorm1d(out_ch), nn.ReLU(),
          nn.Conv1d(out_ch, out_ch, kernel_size=5, padding=2),
          nn.BatchNorm1d(out_ch), nn.ReLU())

    def forward(self, x):
      return self.conv(x)

  class inconv(nn.Module):  # pylint: disable=invalid-name
    def __init__(self, in_ch, out_ch):
      super().__init__()
      self.conv = double_conv(in_ch, out_ch)

    def forward(self, x):
      return self.conv(x)

  class outconv(nn.Module):  # pylint: disable=invalid-name
    def __init__(self, in_ch, out_ch):
      super().__init__()
      self.conv = nn.Conv1d(in_ch, out_ch, kernel_size=1)

    def forward(self, x):
      return self.conv(x)

  class down(nn.Module):  # pylint: disable=invalid-name
    def __init__(self, in_ch, out_ch):
      super().__init__()
      self.max_pool_conv = nn.Sequential(nn.MaxPool1d(2),
                                         double_conv(in_ch, out_ch))

    def forward(self, x):
      return self.max_pool_conv(x)

  class up(nn.Module):  # pylint: disable=invalid-name
    def __init__(self, in_channels, out_channels):
      super().__init__()
      self.up = nn.Upsample(scale_factor=2, mode="linear", align_corners=True)
      self.conv = double_conv(in_channels, out_channels)

    def forward(self, x1, x2):
      x1 = self.up(x1)
      diff = x2.size(2) - x1.size(2)
      x1 = f.pad(x1, [diff // 2, diff - diff // 2])
      return self.conv(torch.cat([x2, x1], dim=1))

  class TPPblock(nn.Module):
    def __init__(self, in_channels):
      super().__init__()
      self.pools = [nn.MaxPool1d(kernel_size=k, stride=k) for k in (2, 3, 5, 6)]
      self.conv = nn.Conv1d(in_channels, 1, kernel_size=1, padding=0)

    def forward(self, x):
      t = x.size(2)
      layers = [f.interpolate(self.conv(pool(x)), size=t, mode="linear",
                              align_corners=True) for pool in self.pools]
      return torch.cat(layers + [x], 1)

  class C2F_TCN(nn.Module):  # pylint: disable=invalid-name
    def __init__(self, n_channels, n_classes):
      super().__init__()
      self.inc = inconv(n_channels, 256)
      self.down1 = down(256, 256)
      self.down2 = down(256, 256)
      self.down3 = down(256, 128)
      self.down4 = down(128, 128)
      self.down5 = down(128, 128)
      self.down6 = down(128, 128)
      self.up = up(260, 128)
      self.outcc0 = outconv(128, n_classes)
      self.up0 = up(256, 128)
      self.outcc1 = outconv(128, n_classes)
      self.up1 = up(256, 128)
      self.outcc2 = outconv(128, n_classes)
      self.up2 = up(384, 128)
      self.outcc3 = outconv(128, n_classes)
      self.up3 = up(384, 128)
      self.outcc4 = outconv(128, n_classes)
      self.up4 = up(384, 128)
      self.outcc = outconv(128, n_classes)
      self.tpp = TPPblock(128)
      self.weights = torch.nn.Parameter(torch.ones(6))

    def forward(self, x):
      x1 = self.inc(x)
      x2 = self.down1(x1)
      x3 = self.down2(x2)
      x4 = self.down3(x3)
      x5 = self.down4(x4)
      x6 = self.down5(x5)
      x7 = self.tpp(self.down6(x6))
      x = self.up(x7, x6)
      y1 = self.outcc0(f.relu(x))
      x = self.up0(x, x5)
      y2 = self.outcc1(f.relu(x))
      x = self.up1(x, x4)
      y3 = self.outcc2(f.relu(x))
      x = self.up2(x, x3)
      y4 = self.outcc3(f.relu(x))
      x = self.up3(x, x2)
      y5 = self.outcc4(f.relu(x))
      x = self.up4(x, x1)
      return self.outcc(x), [y5, y4, y3, y2, y1], x

  # Module constructors draw their initial weights from torch's global RNG:
  # seed it (without disturbing other users) so every run builds one model.
  with torch.random.fork_rng():
    torch.manual_seed(0)
    model = C2F_TCN(FEATURES, CLASSES)
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():  # non-trivial BatchNorm statistics and affines
    for name, buf in model.named_buffers():
      if name.endswith("running_mean"):
        buf.copy_(torch.randn(buf.shape, generator=gen) * 0.1)
      elif name.endswith("running_var"):
        buf.copy_(torch.rand(buf.shape, generator=gen) + 0.5)
    for name, p in model.named_parameters():
      if ".1.weight" in name or ".4.weight" in name:  # BatchNorm scales
        p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
      elif ".1.bias" in name or ".4.bias" in name:
        p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
  return model.eval()


@pytest.fixture(scope="module")
def public_model():
  return _public_c2f_tcn()


def test_public_keys_are_all_converted(public_model):
  state = {k: v.numpy() for k, v in public_model.state_dict().items()}
  assert {"inc.conv.conv.0.weight", "down6.max_pool_conv.1.conv.4.running_var",
          "tpp.conv.weight", "up.conv.conv.3.weight", "up4.conv.conv.0.bias",
          "outcc0.conv.weight", "outcc.conv.bias", "weights"} <= set(state)
  variables = import_weights.convert_c2f_tcn(state)
  assert variables["params"]["up1"]["conv0"]["kernel"].shape == (5, 260, 128)
  with pytest.raises(ValueError, match="unconverted"):
    import_weights.convert_c2f_tcn(dict(state, extra=np.zeros(1)))


# Lengths where the PyTorch model's own pooling needs no padding (multiples of
# 64, at least 384); at other lengths our C2FTCN pads and masks by design.
@pytest.mark.parametrize("length", [384, 448])
def test_outputs_match_pytorch(public_model, length):
  import torch  # pylint: disable=g-import-not-at-top
  state = {k: v.numpy() for k, v in public_model.state_dict().items()}
  variables = import_weights.convert_c2f_tcn(state)
  x = np.random.default_rng(length).normal(
      size=(2, length, FEATURES)).astype(np.float32)
  with torch.no_grad():
    y, heads, features = public_model(torch.from_numpy(x.transpose(0, 2, 1)))
  ours = jax.jit(c2f_tcn.C2FTCN(CLASSES).apply)(variables, x)
  channels_last = lambda t: t.numpy().transpose(0, 2, 1)
  np.testing.assert_allclose(ours["logits"], channels_last(y), atol=1e-5,
                             rtol=1e-5)
  np.testing.assert_allclose(ours["features"], channels_last(features),
                             atol=1e-5, rtol=1e-5)
  # PyTorch returns [y5, y4, y3, y2, y1]; ours are ordered y1..y5.
  for got, want in zip(ours["head_logits"], heads[::-1]):
    np.testing.assert_allclose(got, channels_last(want), atol=1e-5, rtol=1e-5)
  # The 1e-5 tolerance is a real check only if outputs are far above it.
  assert np.abs(channels_last(y)).max() > 1e-2


def test_imported_teacher_is_a_run_directory(public_model, tmp_path):
  state = {k: v.numpy() for k, v in public_model.state_dict().items()}
  variables = import_weights.convert_c2f_tcn(state)
  out = str(tmp_path / "teacher")
  import_weights.save_c2f_teacher(out, variables, "c2f.model")
  assert trainer.read_run_config(out)["mode"] == "exo_supervised"
  _, restored = checkpoints.restore_state(out)
  jax.tree.map(np.testing.assert_array_equal,
               {k: restored[k] for k in ("params", "batch_stats")}, variables)
