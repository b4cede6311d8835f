"""Training and distillation step throughput of C2F-TCN: JAX vs PyTorch.

  python benchmarks/step_throughput.py                 # reference sizes
  python benchmarks/step_throughput.py --quick         # smoke run, seconds
  python benchmarks/step_throughput.py --sizes 1024x600x8 --repeats 5
  python benchmarks/step_throughput.py --jax-conv xla    # one JAX variant
  python benchmarks/step_throughput.py --frameworks jax torch torch_compile

For every size FEATURE_DIMxWINDOWxBATCH it times, each in a fresh process
(so peak memory is that configuration's own): the JAX supervised step
(`trainer.make_train_step`, the trainer's Adam, jit with donated state), the
JAX model-distillation step (frozen teacher forward + student update), and
the same two steps in PyTorch (`torch_c2f_tcn.py`; eager, and with
`--frameworks ... torch_compile` its networks under `torch.compile`, whose
first step, the compilation, gets a column). PyTorch runs on CUDA where it
sees a GPU, JAX on its default device. JAX runs once per
`--jax-conv` implementation of the model's 5-tap convolutions: "xla" (XLA's
convolution) and "winograd" (F(4, 5) minimal filtering, the model's
`conv_impl="winograd"`: the same function with 2.5x fewer matmul FLOPs).
It reports the median
and the best step time over --repeats timed steps after --warmup steps,
frames per second (batch x window / step time), achieved FLOP/s (the model's
FLOPs: those of the compiled JAX step with XLA's convolution, from XLA's cost
analysis, used for every row, so a Winograd step's figure is effective FLOP/s
and can pass the ceiling; its own executed FLOPs get a column) against
a measured float32 matmul ceiling (the faster of JAX's and PyTorch's 4096^2
matmul), and peak memory (the process's max RSS on CPU, the device's peak
bytes in use on an accelerator), then prints a Markdown table with the
JAX/PyTorch throughput ratio and the distillation/supervised step time ratio.

Both frameworks run float32 on the same inputs with their default threading.
On a machine shared with other jobs the median moves with their load (the
header prints the load average); the best step is the steadier estimate.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
REFERENCE_SIZES = ("1024x600x1", "1024x600x8", "2048x600x1", "2048x600x8")
QUICK_SIZES = ("16x64x2",)
STEPS = ("train", "distill")
JAX_CONVS = ("xla", "winograd")
NUM_CLASSES = 32


def parse_size(text: str) -> tuple[int, int, int]:
  try:
    feature_dim, window, batch = (int(v) for v in text.lower().split("x"))
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"size {text!r} is not FEATURE_DIMxWINDOWxBATCH, e.g. 1024x600x8"
    )
  return feature_dim, window, batch


def peak_memory_mib(device=None) -> float:
  """Peak bytes on an accelerator, else this process's max RSS."""
  if device is not None and device.platform != "cpu":
    stats = device.memory_stats() or {}
    if "peak_bytes_in_use" in stats:
      return stats["peak_bytes_in_use"] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB


def time_steps(step, warmup: int, repeats: int) -> list[float]:
  """Seconds per call of `step()` (which must block until done)."""
  for _ in range(warmup):
    step()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return times


# ----- Workers: one configuration per process. -----


def jax_worker(
  kind: str,
  feature_dim: int,
  window: int,
  batch: int,
  warmup: int,
  repeats: int,
  conv_impl: str = "xla",
) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  sys.path.insert(0, REPO)
  from configs import default  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.methods import registry  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.training import trainer  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.models import c2f_tcn  # pylint: disable=g-import-not-at-top

  distill = kind == "distill"
  model = c2f_tcn.C2FTCN(NUM_CLASSES, conv_impl=conv_impl)
  method = registry.get("distill_model" if distill else "exo_supervised")
  mode = method(
    model=model,
    ensemble_weights=(1.0,) * 6,
    smooth_weight=0.17,
    train_view="ego" if distill else "exo",
    label_key=None if distill else "labels",
  )
  rng = np.random.default_rng(0)
  data = {
    "exo": rng.normal(size=(batch, window, feature_dim)).astype(np.float32),
    "mask": np.ones((batch, window), np.float32),
  }
  if distill:
    data["ego"] = rng.normal(size=data["exo"].shape).astype(np.float32)
    data["labels"] = np.full((batch, window), -100, np.int32)
  else:
    data["labels"] = rng.integers(
      0, NUM_CLASSES, (batch, window), dtype=np.int32
    )
  frozen = {}
  if distill:
    frozen["teacher"] = model.init(
      jax.random.key(1), data["exo"][:1, :8], data["mask"][:1, :8]
    )
  optimizer = trainer.make_optimizer(default.get_config())
  state = jax.jit(
    lambda: trainer.init_state(mode, frozen, optimizer, feature_dim, seed=0)
  )()
  data = jax.device_put(data)
  start = time.perf_counter()
  compiled = (
    jax.jit(trainer.make_train_step(mode, optimizer), donate_argnums=0)
    .lower(state, data)
    .compile()
  )
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    cost = cost[0]
  flops = float((cost or {}).get("flops", float("nan")))

  def step():
    nonlocal state
    state, logs = compiled(state, data)
    logs["loss"].block_until_ready()

  times = time_steps(step, warmup, repeats)
  return {
    "times": times,
    "flops": flops,
    "compile_s": compile_s,
    "peak_mib": peak_memory_mib(jax.devices()[0]),
    "device": jax.devices()[0].device_kind,
  }


def torch_device():
  """(device, its name): CUDA where PyTorch sees a GPU, else the CPU."""
  import torch  # pylint: disable=g-import-not-at-top

  if torch.cuda.is_available():
    return torch.device("cuda"), torch.cuda.get_device_name()
  return torch.device("cpu"), "cpu"


def torch_worker(
  kind: str,
  feature_dim: int,
  window: int,
  batch: int,
  warmup: int,
  repeats: int,
  compiled: bool = False,
) -> dict:
  """PyTorch eager, or with `compiled` the networks under `torch.compile`
  (its default inductor backend; the optimiser step stays eager). The
  compilation happens in the first warm-up step and is timed apart."""
  import torch  # pylint: disable=g-import-not-at-top

  sys.path.insert(0, HERE)
  import torch_c2f_tcn  # pylint: disable=g-import-not-at-top

  device, device_name = torch_device()
  torch.manual_seed(0)
  student = torch_c2f_tcn.C2FTCN(feature_dim, NUM_CLASSES).to(device)
  optimizer = torch_c2f_tcn.make_optimizer(student)
  net = torch.compile(student) if compiled else student
  data = {"mask": torch.ones(batch, window, device=device)}
  if kind == "distill":
    teacher = torch_c2f_tcn.C2FTCN(feature_dim, NUM_CLASSES).to(device)
    for p in teacher.parameters():
      p.requires_grad_(False)
    teacher_net = torch.compile(teacher) if compiled else teacher
    data["exo"] = torch.randn(batch, feature_dim, window, device=device)
    data["ego"] = torch.randn(batch, feature_dim, window, device=device)
    run = lambda: torch_c2f_tcn.distill_step(net, teacher_net, optimizer, data)
  else:
    data["x"] = torch.randn(batch, feature_dim, window, device=device)
    data["labels"] = torch.randint(
      0, NUM_CLASSES, (batch, window), device=device
    )
    run = lambda: torch_c2f_tcn.train_step(net, optimizer, data)
  step = lambda: float(run())  # .item(): waits for the device
  start = time.perf_counter()
  step()  # the first step: torch.compile compiles here
  compile_s = time.perf_counter() - start
  times = time_steps(step, max(0, warmup - 1), repeats)
  if device.type == "cuda":
    peak = torch.cuda.max_memory_allocated() / 2**20
  else:
    peak = peak_memory_mib()
  return {
    "times": times,
    "peak_mib": peak,
    "first_step_s": compile_s,
    "threads": torch.get_num_threads(),
    "version": torch.__version__,
    "device": device_name,
  }


def ceiling_worker(framework: str, size: int, repeats: int) -> dict:
  """FLOP/s of a large float32 matmul: what this machine can reach."""
  if framework == "torch":
    import torch  # pylint: disable=g-import-not-at-top

    device, device_name = torch_device()
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    times = time_steps(lambda: (a @ b, sync()), 1, repeats)
    return {
      "flops_per_s": 2 * size**3 / min(times),
      "device": device_name,
      "platform": device.type,
    }
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  times = time_steps(lambda: matmul(a, b).block_until_ready(), 1, repeats)
  return {
    "flops_per_s": 2 * size**3 / min(times),
    "device": jax.devices()[0].device_kind,
    "platform": jax.devices()[0].platform,
  }


def run_worker(args: list[str]) -> dict | None:
  """Runs this file as a worker; None if it failed (the error is printed)."""
  proc = subprocess.run(
    [sys.executable, __file__, "--worker", *args],
    capture_output=True,
    text=True,
    cwd=REPO,
  )
  if proc.returncode:
    print(
      f"worker {' '.join(args)} failed:\n{proc.stderr[-3000:]}", file=sys.stderr
    )
    return None
  return json.loads(proc.stdout.strip().splitlines()[-1])


# ----- Report. -----


def median_ms(result: dict | None) -> float:
  return 1e3 * statistics.median(result["times"]) if result else float("nan")


def best_ms(result: dict | None) -> float:
  """The fastest step: the least disturbed by other work on the machine."""
  return 1e3 * min(result["times"]) if result else float("nan")


def fmt(value: float, digits: int = 0) -> str:
  return "n/a" if value != value else f"{value:,.{digits}f}"  # NaN -> n/a


def fmt_ratio(value: float) -> str:
  return "n/a" if value != value else f"{value:,.2f}x"


def table(results: dict, sizes, jax_convs, ceiling: float, steps=STEPS) -> str:
  """Markdown: one row per size, step and JAX convolution, JAX and PyTorch
  side by side; times, frames/s and FLOP/s from the median step, (best)
  from the fastest."""
  head = (
    "| features x window x batch | step | JAX conv | JAX ms "
    "| PyTorch ms | JAX frames/s | PyTorch frames/s "
    "| JAX / PyTorch throughput | model GFLOP/step "
    "| JAX executed GFLOP/step | JAX GFLOP/s (% ceiling) "
    "| PyTorch GFLOP/s (% ceiling) | JAX peak MiB | PyTorch peak MiB "
    "| JAX compile s | torch.compile ms | JAX / torch.compile throughput "
    "| torch.compile first step s |"
  )
  lines = [head, "|" + "---|" * head.count(" |")]
  for size in sizes:
    feature_dim, window, batch = size
    for kind in steps:
      torch_r = results.get(("torch", kind, size))
      torch_ms = median_ms(torch_r)
      compiled_r = results.get(("torch_compile", kind, size))
      compiled_ms = median_ms(compiled_r)
      # The model's FLOPs: the step with XLA's direct convolution.
      model_r = results.get(("jax:xla", kind, size))
      flops = model_r["flops"] if model_r else float("nan")
      frames = batch * window

      def achieved(ms):
        gflops = flops / ms / 1e6
        return f"{fmt(gflops, 1)} ({fmt(100 * gflops * 1e9 / ceiling, 0)}%)"

      def peak(r):
        return fmt(r["peak_mib"] if r else float("nan"))

      for conv in jax_convs:
        jax_r = results.get((f"jax:{conv}", kind, size))
        jax_ms = median_ms(jax_r)
        lines.append(
          f"| {feature_dim} x {window} x {batch} | {kind} | {conv} "
          f"| {fmt(jax_ms, 1)} ({fmt(best_ms(jax_r), 1)}) "
          f"| {fmt(torch_ms, 1)} ({fmt(best_ms(torch_r), 1)}) "
          f"| {fmt(frames / jax_ms * 1e3)} "
          f"| {fmt(frames / torch_ms * 1e3)} "
          f"| {fmt_ratio(torch_ms / jax_ms)} "
          f"({fmt_ratio(best_ms(torch_r) / best_ms(jax_r))}) "
          f"| {fmt(flops / 1e9, 1)} "
          f"| {fmt(jax_r['flops'] / 1e9 if jax_r else float('nan'), 1)} "
          f"| {achieved(jax_ms)} | {achieved(torch_ms)} "
          f"| {peak(jax_r)} | {peak(torch_r)} "
          f"| {fmt(jax_r['compile_s'] if jax_r else float('nan'), 1)} "
          f"| {fmt(compiled_ms, 1)} ({fmt(best_ms(compiled_r), 1)}) "
          f"| {fmt_ratio(compiled_ms / jax_ms)} "
          f"| {fmt(compiled_r['first_step_s'] if compiled_r else float('nan'), 1)} |"
        )
  lines.append("")
  lines.append("Distillation step time / supervised step time:")
  variants = [f"jax:{c}" for c in jax_convs] + [
    f for f in ("torch", "torch_compile") if any(k[0] == f for k in results)
  ]
  for size in sizes:
    ratios = []
    for variant in variants:
      train = median_ms(results.get((variant, "train", size)))
      distill = median_ms(results.get((variant, "distill", size)))
      ratios.append(f"{variant} {fmt(distill / train, 2)}")
    lines.append(f"- {' x '.join(map(str, size))}: {', '.join(ratios)}")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--sizes",
    type=parse_size,
    nargs="+",
    default=None,
    help=f"FEATURE_DIMxWINDOWxBATCH ... (default: {' '.join(REFERENCE_SIZES)})",
  )
  parser.add_argument(
    "--repeats",
    type=int,
    default=None,
    help="timed steps per configuration (default 10)",
  )
  parser.add_argument(
    "--warmup",
    type=int,
    default=None,
    help="untimed steps after compiling (default 2)",
  )
  parser.add_argument(
    "--frameworks",
    nargs="+",
    default=["jax", "torch"],
    choices=["jax", "torch", "torch_compile"],
    help="what to time (default: jax torch); torch_compile: the PyTorch "
    "networks under torch.compile",
  )
  parser.add_argument(
    "--jax-conv",
    nargs="+",
    default=list(JAX_CONVS),
    choices=JAX_CONVS,
    dest="jax_convs",
    help="JAX implementations of the 5-tap convolutions to time (default: all)",
  )
  parser.add_argument(
    "--steps",
    nargs="+",
    default=list(STEPS),
    choices=STEPS,
    help="steps to time: a supervised train step, a distillation step "
    "(default: both)",
  )
  parser.add_argument(
    "--quick",
    action="store_true",
    help=f"smoke run: sizes {' '.join(QUICK_SIZES)}, "
    "2 repeats, 1 warmup step, a small ceiling matmul",
  )
  parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.worker:
    what, *rest = args.worker
    if what == "ceiling":
      result = ceiling_worker(rest[0], int(rest[1]), int(rest[2]))
    else:
      kind, size, warmup, repeats, *conv = rest
      if what == "jax":
        result = jax_worker(
          kind, *parse_size(size), int(warmup), int(repeats), *conv
        )
      else:
        result = torch_worker(
          kind,
          *parse_size(size),
          int(warmup),
          int(repeats),
          compiled=what == "torch_compile",
        )
    print(json.dumps(result))
    return

  sizes = args.sizes or [
    parse_size(s) for s in (QUICK_SIZES if args.quick else REFERENCE_SIZES)
  ]
  repeats = args.repeats or (2 if args.quick else 10)
  warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
  frameworks = list(args.frameworks)
  if importlib.util.find_spec("torch") is None and set(frameworks) - {"jax"}:
    print(
      "PyTorch is not installed: JAX only (pip install -e '.[bench]')",
      file=sys.stderr,
    )
    frameworks = [f for f in frameworks if f == "jax"]

  load_before = os.getloadavg()[0]
  ceilings = {
    f: run_worker(
      ["ceiling", f, "512" if args.quick else "4096", str(min(repeats, 5))]
    )
    for f in frameworks
    if f != "torch_compile"  # the same matmul as eager PyTorch's
  }
  ceiling = max(
    (c for c in ceilings.values() if c), key=lambda c: c["flops_per_s"]
  )
  variants = (
    [("jax", c) for c in args.jax_convs] if "jax" in frameworks else []
  ) + [(f, None) for f in ("torch", "torch_compile") if f in frameworks]
  jax_convs = args.jax_convs if "jax" in frameworks else []
  results = {}
  for size in sizes:
    for kind in args.steps:
      for framework, conv in variants:
        text = "x".join(map(str, size))
        name = f"jax:{conv}" if conv else framework
        result = run_worker(
          [framework, kind, text, str(warmup), str(repeats)]
          + ([conv] if conv else [])
        )
        if result:
          results[name, kind, size] = result
        print(
          f"{name} {kind} {text}: {fmt(median_ms(result), 1)} ms",
          file=sys.stderr,
          flush=True,
        )

  torch_info = next(
    (r for (f, _, _), r in results.items() if f.startswith("torch")), None
  )
  print(
    f"Device: {ceiling['device']} ({ceiling['platform']}), "
    f"{os.cpu_count()} CPUs visible; load average {load_before:.1f} "
    f"before, {os.getloadavg()[0]:.1f} after. float32 matmul ceiling "
    "(best of "
    + ", ".join(
      f"{f} {c['flops_per_s'] / 1e9:.1f}" for f, c in ceilings.items() if c
    )
    + " GFLOP/s). "
    + (
      f"PyTorch {torch_info['version']} on {torch_info['device']}, "
      f"{torch_info['threads']} threads. "
      if torch_info
      else ""
    )
    + f"Step times: median (best) of {repeats} steps after {warmup} "
    "warm-up steps.\n"
  )
  print(table(results, sizes, jax_convs, ceiling["flops_per_s"], args.steps))


if __name__ == "__main__":
  main()
