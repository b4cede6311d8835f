"""Decoded video frames as the 3-channel RGB a backbone expects.

Assembly101's head-mounted cameras are monochrome (`HMC_*_mono10bit`): PyAV
decodes them as one luma plane (`gray`, or `gray10le` etc. at more than 8
bits). A backbone trained on RGB needs three channels, so the plane is
scaled to 8 bits (full range, rounded: 10-bit 1023 is 255) and replicated,
which makes a grey frame of a monochrome video identical to the same grey
frame of a colour one. Colour frames go through PyAV's RGB conversion.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# Luma-only pixel formats and their bits per sample.
GRAY_BITS = {
  "gray": 8,
  "gray9le": 9,
  "gray10le": 10,
  "gray12le": 12,
  "gray14le": 14,
  "gray16le": 16,
  "gray9be": 9,
  "gray10be": 10,
  "gray12be": 12,
  "gray14be": 14,
  "gray16be": 16,
}


def gray_to_uint8(plane: np.ndarray, bits: int) -> np.ndarray:
  """A luma plane of `bits` bits as uint8, full range, rounded."""
  if bits == 8:
    return np.asarray(plane, np.uint8)
  top = (1 << bits) - 1
  scaled = (np.asarray(plane, np.int64) * 255 + top // 2) // top
  return np.clip(scaled, 0, 255).astype(np.uint8)


def frame_to_rgb(frame) -> np.ndarray:
  """(H, W, 3) uint8 RGB of a decoded PyAV video frame; a monochrome frame's
  channel is replicated."""
  bits = GRAY_BITS.get(frame.format.name)
  if bits is None:
    return frame.to_ndarray(format="rgb24")
  plane = frame.to_ndarray()
  if plane.ndim == 3:  # some PyAV versions keep a channel axis
    plane = plane[..., 0]
  gray = gray_to_uint8(plane, bits)
  return np.repeat(gray[..., None], 3, axis=-1)


def iter_rgb(path: str) -> Iterator[np.ndarray]:
  """(H, W, 3) uint8 RGB frames of the first video stream of `path`."""
  import av  # pylint: disable=g-import-not-at-top

  with av.open(path) as container:
    if not container.streams.video:
      raise ValueError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    for frame in container.decode(stream):
      yield frame_to_rgb(frame)


def decode_video(path: str, dtype=np.uint8) -> np.ndarray:
  """All frames of `path` as (T, H, W, 3) RGB: uint8, or float in [0, 1]."""
  frames = list(iter_rgb(path))
  if not frames:
    raise ValueError(f"{path}: no frame could be decoded")
  video = np.stack(frames)
  if np.issubdtype(np.dtype(dtype), np.floating):
    return video.astype(dtype) / np.asarray(255, dtype)
  return video.astype(dtype, copy=False)
