"""CostModel: the fit, exact lookup, interpolation, JSON round trip, the reference format and the plot."""

import json

import numpy as np
import pytest

from optimus_backend.cost_model import CostModel, cache_name, nondecreasing, nonnegative_lstsq, plot

TRUE = {"a": 4.0, "alpha": 0.02, "beta": 0.3, "gamma": 0.05, "delta": 0.001}
GRID = [(b, c, p) for b in (1, 4, 16, 64) for c in (1, 4, 16, 32) for p in (128, 512, 2048)]


def smooth(b, c, p, k=TRUE):
    return k["a"] + k["alpha"] * b * c + k["beta"] * b + k["gamma"] * c + k["delta"] * b * p


def test_fit_recovers_known_coefficients():
    model = CostModel({key: smooth(*key) for key in GRID})
    for name, value in TRUE.items():
        assert model.coef[name] == pytest.approx(value, rel=1e-6, abs=1e-9)
    assert model.predict(100, 7, 1000) == pytest.approx(smooth(100, 7, 1000), rel=1e-6)


def test_fit_keeps_coefficients_non_negative():
    x = np.array([[1.0, v] for v in range(10)])
    y = 5.0 - 0.5 * x[:, 1]  # the best unconstrained slope is negative
    coef = nonnegative_lstsq(x, y, [0, 1])
    assert coef[1] == 0.0 and coef[0] == pytest.approx(y.mean())
    model = CostModel({(b, c, 512): 10.0 - 0.01 * c + 0.1 * b for b in (1, 8, 64) for c in (1, 8, 32)})
    assert min(model.coef.values()) >= 0.0


def test_exact_where_measured_interpolated_between_and_fit_slope_outside():
    rng = np.random.default_rng(0)
    points = {key: smooth(*key) * rng.uniform(0.8, 1.2) for key in GRID}
    model = CostModel(points)
    for key, ms in nondecreasing(points).items():  # measured, less the noise that made a larger step cheaper
        assert model.predict(*key) == pytest.approx(ms)
    low, high = model.predict(16, 16, 512), model.predict(16, 32, 512)
    assert min(low, high) <= model.predict(16, 24, 512) <= max(low, high)
    edge = model.predict(64, 32, 2048)
    assert model.predict(128, 32, 2048) - edge == pytest.approx(model.fit(128, 32, 2048) - model.fit(64, 32, 2048))


def test_a_step_measured_cheaper_than_a_smaller_one_is_pooled_with_it(tmp_path):
    """Noise that makes a larger c or b look cheaper than a smaller one is pooled (the two cells get their mean), so
    predictions never fall as c or b grows at the measured points; the saved profile keeps what was measured."""
    points = {key: smooth(*key) for key in GRID}
    low, high = (16, 16, 512), (16, 4, 512)
    points[high] = points[low] * 1.3  # c = 4 measured 30% above c = 16 at b = 16
    model = CostModel(points)
    assert model.predict(*high) == pytest.approx(model.predict(*low))
    for p in (128, 512, 2048):
        for b in (1, 4, 16, 64):
            row = [model.predict(b, c, p) for c in (1, 4, 16, 32)]
            assert row == sorted(row)
        for c in (1, 4, 16, 32):
            column = [model.predict(b, c, p) for b in (1, 4, 16, 64)]
            assert column == sorted(column)
    assert model.predict(16, 32, 512) == pytest.approx(smooth(16, 32, 512))  # cells in order stay exact
    saved = CostModel.load(model.save(tmp_path / "profile.json"))
    assert saved.points[high] == points[high]


def test_single_prefix_profile_ignores_the_prefix_term():
    model = CostModel({(b, c, 512): smooth(b, c, 512) for b in (1, 8, 64) for c in (1, 8, 32)})
    assert model.coef["delta"] == 0.0
    assert model.predict(8, 8) == pytest.approx(smooth(8, 8, 512))
    assert model.predict(8, 8, 4096) == pytest.approx(model.predict(8, 8, 512))


def test_json_round_trip_and_meta_check(tmp_path):
    meta = {"model": "qwen3-8b", "device": "NVIDIA H100 80GB HBM3", "dtype": "bfloat16"}
    model = CostModel({key: smooth(*key) + 0.1 * key[0] ** 0.5 for key in GRID}, meta)
    path = model.save(tmp_path / cache_name(meta))
    assert path.name == "qwen3-8b__NVIDIA_H100_80GB_HBM3__bfloat16.json"
    loaded = CostModel.load(path, expect_meta={"model": "qwen3-8b", "dtype": "bfloat16"})
    assert loaded.meta == meta and loaded.points == model.points
    for b, c, p in [(3, 5, 300), (64, 32, 512), (200, 2, 4000)]:
        assert loaded.predict(b, c, p) == pytest.approx(model.predict(b, c, p))
    with pytest.raises(ValueError, match="dtype"):
        CostModel.load(path, expect_meta={"dtype": "float32"})


def test_reference_profile_format(tmp_path):
    path = tmp_path / "sat_toy_P512.json"
    path.write_text(json.dumps({f"{b}x{c}": smooth(b, c, 512) for b in (1, 8) for c in (1, 32)}))
    model = CostModel.from_reference(path, meta={"model": "toy"})
    assert model.meta["model"] == "toy" and model.predict(8, 32) == pytest.approx(smooth(8, 32, 512))
    assert model.reference_prefix == 512


def test_plot_writes_a_png(tmp_path):
    model = CostModel({key: smooth(*key) for key in GRID}, {"model": "toy"})
    path = plot(model, tmp_path / "t.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_chunk_curve_matches_predict_at_fractional_chunks():
    """The vectorized curve the controller prices steps with equals predict() at any c, inside and outside the
    measured chunk sizes, at measured and unmeasured batch sizes and prefixes."""
    rng = np.random.default_rng(3)
    points = {(b, c, p): float(rng.uniform(1, 50)) + 0.01 * b * c for b in (1, 8, 64) for c in (1, 4, 16)
              for p in (256, 1024)}
    model = CostModel(points)
    chunks = rng.uniform(0.2, 40, 200)
    for b, prefix in ((8, 256), (30, 700), (100, None)):
        expected = np.array([model.predict(b, c, prefix) for c in chunks])
        assert np.allclose(model.chunk_curve(b, prefix)(chunks), expected, rtol=1e-9, atol=1e-9)


def test_install_puts_profiles_where_the_engine_looks(tmp_path):
    from optimus_backend.config import PROJECT_ROOT
    from optimus_backend.profiler import install

    source = PROJECT_ROOT / "docs" / "benchmarks" / "profile_qwen3-8b.json"
    (path,) = install([source], tmp_path)
    assert path == tmp_path / "qwen3-8b__NVIDIA_H100_80GB_HBM3__bfloat16.json"
    assert CostModel.load(path).points == CostModel.load(source).points
    (here,) = install([source], tmp_path, device="NVIDIA H200")  # a profile of another card, as a start here
    assert here == tmp_path / "qwen3-8b__NVIDIA_H200__bfloat16.json"
    assert CostModel.load(here).meta["profiled_on"] == "NVIDIA H100 80GB HBM3"


def test_quick_sweep_reaches_max_running_and_stops_once_saturated(monkeypatch):
    """The first-start sweep measures up to the engine's max_running, but no batch past the first (after the
    smallest) whose step is slower than stop_ms."""
    from types import SimpleNamespace

    from optimus_backend import profiler

    assert profiler.quick_batches(128) == [1, 4, 16, 64, 128]
    assert profiler.quick_batches(64) == [1, 4, 16, 64]
    measured = []

    def fake_step(engine, b, c, p, repeats):
        measured.append((b, c))
        return smooth(b, c, p)

    monkeypatch.setattr(profiler, "measure_step", fake_step)
    monkeypatch.setattr(profiler, "fill_kv_random", lambda engine: None)
    monkeypatch.setattr(profiler, "profile_meta", lambda engine: {})
    engine = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(block_size=32)))
    batches, chunks = profiler.quick_batches(128), [1, 8, 32, 64]
    full = profiler.profile(engine, batches, chunks, [512], progress=False)
    assert sorted(b for b, _, _ in full.points) == sorted(b for b in batches for _ in range(3))  # c=64 > block
    measured.clear()
    stop = smooth(16, 32, 512) - 1.0  # only (16, 32) and larger steps are slower
    cut = profiler.profile(engine, batches, chunks, [512], progress=False, stop_ms=stop)
    assert max(b for b, _ in measured) == 16 and (16, 32) in measured
    assert cut.points == {key: ms for key, ms in full.points.items() if key[0] <= 16}


def test_a_profile_of_other_step_code_loads_with_a_warning(tmp_path, monkeypatch, caplog):
    from types import SimpleNamespace

    from optimus_backend import profiler

    kernel = tmp_path / "step_code_probe.py"
    kernel.write_text("KERNEL = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = profiler.step_code(("step_code_probe",))
    kernel.write_text("KERNEL = 2\n")
    assert profiler.step_code(("step_code_probe",)) != before
    current = profiler.step_code()
    for step_code, warned in ((current, False), ("0123abcd", True)):
        path = CostModel({key: smooth(*key) for key in GRID}, {"step_code": step_code}).save(tmp_path / "p.json")
        engine = SimpleNamespace(config=SimpleNamespace(profile_path=path))
        caplog.clear()
        assert profiler.load_cost_model(engine.config, engine).points == CostModel.load(path).points
        assert any("other kernels" in r.getMessage() for r in caplog.records) == warned
