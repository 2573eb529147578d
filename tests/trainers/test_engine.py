"""The training engine: no host read inside a step, reads every `train.sync_every` steps, one step."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from srcaco2.trainers._state import WeightEMA, build_optimizer
from srcaco2.trainers.config import LossConfig, OptimConfig
from srcaco2.trainers.engine import StepContext, StepMonitor, StepOutput, batch_to_device, train_step
from srcaco2.trainers.losses import SRLoss
from srcaco2.trainers.models import build_model

# Every way a CPU tensor's value reaches Python; on CUDA each of these waits for the device.
_READS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__", "__complex__")


class HostRead(AssertionError):
    pass


@contextlib.contextmanager
def no_host_reads(allowed=()):
    """Make every tensor -> Python read (and torch.cuda.synchronize) raise `HostRead`.

    `allowed`: tensors that live on the CPU whatever the device (reading them never waits for it).
    """
    saved = {n: getattr(torch.Tensor, n) for n in _READS}
    saved_sync = torch.cuda.synchronize
    exempt = {id(t) for t in allowed}

    def refuse(name):
        def read(self, *args, **kwargs):
            if id(self) in exempt:
                return saved[name](self, *args, **kwargs)
            raise HostRead(f"host read inside the step: Tensor.{name}")

        return read

    try:
        for n in _READS:
            setattr(torch.Tensor, n, refuse(n))
        torch.cuda.synchronize = refuse("cuda.synchronize")
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)
        torch.cuda.synchronize = saved_sync


def _ctx(**kw):
    torch.manual_seed(0)
    model = build_model("vdsr", 4, num_features=4, num_trunk_layers=1)
    opt = build_optimizer(model.parameters(), OptimConfig(**kw))
    return StepContext(
        net=model, model=model, criterion=SRLoss(LossConfig()), optimizer=opt, device=torch.device("cpu"),
        grad_clip=1.0, ema=WeightEMA(model, 0.9),
    )  # fmt: skip


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(2, 1, 32, 32, generator=g)
    return {"lr": torch.nn.functional.avg_pool2d(hr, 4), "hr": hr}


def test_the_guard_catches_every_read():
    t = torch.ones(())
    for read in (float, int, bool, lambda x: x.item(), lambda x: x.tolist(), lambda x: x.numpy()):
        with no_host_reads(), pytest.raises(HostRead):
            read(t)
    with no_host_reads(), pytest.raises(HostRead):
        if torch.isfinite(t):  # the pattern the step used to have
            pass


@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_train_step_never_reads_the_device(optim):
    """SGD Nesterov + clipping + EMA + the benchmark loss: three steps without one host read.

    Adam's per-parameter step counters are CPU tensors on every device (torch's non-capturable
    Adam reads them with .item()); they are exempt after a first step has created them.
    """
    ctx = _ctx(name=optim)
    if optim == "adam":
        b = _batch(9)
        train_step(ctx, b["lr"], b["hr"])
    counters = [s["step"] for s in ctx.optimizer.state.values() if "step" in s]
    assert len(counters) == (len(list(ctx.model.parameters())) if optim == "adam" else 0)
    before = [p.detach().clone() for p in ctx.model.parameters()]
    outs = []
    with no_host_reads(allowed=counters):
        for seed in range(3):
            lr, hr = batch_to_device(_batch(seed), ctx.device)
            outs.append(train_step(ctx, lr, hr))
    assert all(isinstance(o, StepOutput) and o.loss.shape == () for o in outs)
    losses = [float(o.loss) for o in outs]
    assert all(math.isfinite(v) for v in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, ctx.model.parameters(), strict=True))


def test_train_step_equals_a_plain_step():
    """The step is the textbook one: same weights as forward/loss/backward/clip/SGD written out."""
    ctx = _ctx()
    ref_model = build_model("vdsr", 4, num_features=4, num_trunk_layers=1)
    ref_model.load_state_dict(ctx.model.state_dict())
    ref_opt = build_optimizer(ref_model.parameters(), OptimConfig())
    crit = SRLoss(LossConfig())
    for seed in range(2):
        b = _batch(seed)
        out = train_step(ctx, b["lr"], b["hr"])
        loss, _ = crit(ref_model(b["lr"]), b["hr"])
        ref_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref_model.parameters(), 1.0)
        ref_opt.step()
        torch.testing.assert_close(out.loss, loss.detach(), rtol=0, atol=0)
    for a, b in zip(ctx.model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_monitor_reads_once_and_the_guard_names_the_first_nonfinite_step():
    from srcaco2.trainers.engine.guard import DivergenceGuard, TrainingDivergedError

    mon = StepMonitor()
    for step, v in enumerate([0.5, 0.25, float("nan"), float("inf")], start=1):
        t = torch.tensor(v)
        windows = {"tile": torch.tensor([1]), "y0": torch.tensor([step]), "x0": torch.tensor([0])}
        out = StepOutput(t, t * 2, t * 3, grad_norm=t * 4)
        mon.add(step, 0, out, lr=0.01, data_time_s=0.0, windows=windows)
    calls = []
    real = torch.Tensor.tolist

    def counting(self):
        calls.append(self.shape)
        return real(self)

    torch.Tensor.tolist = counting
    try:
        flushed = mon.flush()
    finally:
        torch.Tensor.tolist = real
    assert calls == [torch.Size([16])]  # one read for 4 steps × (loss, mse, ssim, grad_norm)
    rows = [r for r, _ in flushed]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[1]["mse"] == 0.5 and rows[1]["ssim"] == 0.75
    assert rows[1]["grad_norm"] == 1.0 and math.isnan(rows[2]["loss"])
    guard = DivergenceGuard("stop", explode_mse=1.0, max_skipped=20)
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at step 3 .*\(1, 3, 0\).*optim.grad_clip"):
        for row, rec in flushed:
            guard.check(row, rec.windows, None)
    assert mon.flush() == []


def test_loop_reads_the_device_every_sync_every_steps(tiny, trainer_store, tmp_path, monkeypatch):
    from srcaco2.trainers.engine import monitor
    from srcaco2.trainers.fit import fit

    groups = []
    real = monitor.StepMonitor.flush

    def recording(self):
        groups.append([r.step for r in self.pending])
        return real(self)

    monkeypatch.setattr(monitor.StepMonitor, "flush", recording)
    cfg = tiny(trainer_store, "train.max_steps=8", "train.sync_every=3", "eval.every=100")
    res = fit(cfg, tmp_path / "run")
    assert [g for g in groups if g] == [[1, 2, 3], [4, 5, 6], [7, 8]]  # step 8: validation + last.pt
    assert len(res.losses) == 8


def test_benchmark_times_fits_own_step():
    import srcaco2.benchmarks.train_step as bench
    import srcaco2.trainers.engine.step as engine_step

    assert bench.train_step is engine_step.train_step
    row = bench.bench_one("srcnn", "baseline", scale=4, batch=1, h_size=16, steps=1, warmup=0,
                          device=torch.device("cpu"), compile_model=False)  # fmt: skip
    assert row["step_ms"] > 0 and row["params"] > 0
