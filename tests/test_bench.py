"""bench_model end to end on the fixture artifacts: the report, failure isolation, fit verdicts."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from groundfloor.errors import BadInput
from groundfloor.isolate import run_isolated
from firmware_sim import latency
from firmware_sim.bench import bench_model
from firmware_sim.memory import fit
from firmware_sim.profiles import PROFILE_DIR, load_profile
from firmware_sim.runners import RUNNERS, RunConfig, Runner, arena_search
from fixtures_models import T, bench_dir, timed_bench, tiny_artifacts, tiny_models, x_eval_npz  # noqa: F401

TESTS_DIR = str(Path(__file__).resolve().parent)


class FakeEmulated(Runner):
    """Stands in for the emulated Cortex-M runner: same interface, per-device figures."""
    name, kind, formats = "fake_emulated", "emulated", ("tflite",)
    target = "firmware_sim.runners.litert:child_tflite"

    def applicable(self, artifact):
        return (artifact.get("mode") == "int8", "int8 only")

    def device_figures(self, profile, record):
        if profile.device_class != "mcu":
            return None
        return {"latency": latency.instructions_to_latency(40_000, profile),
                "memory": None}


class Hangs(Runner):
    name, formats, target = "hangs", ("onnx",), "fixtures_models:child_hang"

    def run(self, model_path, x_path, out_path, config, extra=None):
        res = run_isolated(self.target, {}, timeout=2, env={"PYTHONPATH": TESTS_DIR + os.pathsep +
                                                              os.environ.get("PYTHONPATH", "")})
        return {"runner": self.name, "runner_kind": self.kind, **res.as_record(),
                "peak_rss_bytes": {"value": res.peak_rss_bytes, "kind": "measured"}}


def _profile(tmp_path, name, sram, reserve=0):
    text = (PROFILE_DIR / "cortex_m4f.toml").read_text()
    text = text.replace('name = "cortex_m4f"', f'name = "{name}"')
    text = text.replace("sram_bytes = 262_144", f"sram_bytes = {sram}")
    text = text.replace("runtime_sram_bytes = 16_384", f"runtime_sram_bytes = {reserve}")
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return str(p)


@pytest.fixture(scope="module")
def bench(tiny_artifacts, x_eval_npz, tmp_path_factory):
    tmp, cache = bench_dir(tmp_path_factory, "bench")
    entry = json.loads((tiny_artifacts / "manifest.json").read_text())["artifacts"]["int8_tflite"]
    # the exact arena (cached for the bench that follows) sets the two edge-case profiles
    need = arena_search(tiny_artifacts / entry["file"], x_eval_npz, entry["sha256"],
                        cache_dir=cache)["min_arena_bytes"]
    devices = ["cortex_m4f", "cortex_a53", _profile(tmp, "tight", need - 1), _profile(tmp, "exact", need)]
    RUNNERS["fake_emulated"], RUNNERS["hangs"] = FakeEmulated, Hangs
    try:
        report, seconds = timed_bench(
            tiny_artifacts, devices, tmp / "reports" / "tiny" / "bench.json", progress=lambda *_: None,
            runners=["litert", "onnxruntime", "tflm", "tflite_runtime", "fake_emulated", "hangs"],
            config=RunConfig(warmup=2, runs=50, timeout_s=60), cache_dir=cache)
    finally:
        RUNNERS.pop("fake_emulated", None)
        RUNNERS.pop("hangs", None)
    print(f"\nbench of the fixture model: {seconds:.1f} s")
    return {"report": report, "path": tmp / "reports" / "tiny" / "bench.json", "need": need, "seconds": seconds}


def test_report_written_atomically_with_machine_and_versions(bench):
    on_disk = json.loads(bench["path"].read_text())
    assert on_disk["schema"] == 1 and on_disk["model"] == "tiny"
    assert set(on_disk["machine"]) >= {"platform", "cpu", "cores_logical"}
    assert on_disk["tool_versions"]["ai-edge-litert"] and on_disk["tool_versions"]["tflite-micro"]
    assert on_disk["float_reference"]["truth"]["rmse"] > 0
    assert not [p for p in bench["path"].parent.iterdir() if p.name.endswith(".tmp")]
    assert bench["seconds"] < 60


def test_truncated_artifact_is_reported_and_the_bench_goes_on(bench):
    arts = bench["report"]["artifacts"]
    bad = arts["truncated_int8_tflite"]
    assert bad["status"] == "failed" and bad["error"]
    assert bad["runners"]["litert"]["status"] in ("error", "crashed")
    assert any("sha256 differs" in n for n in bad["notes"])
    assert arts["failed_export"]["status"] == "skipped"
    for name in ("float32_tflite", "int8_tflite", "float32_onnx", "stream_float32_tflite"):
        assert arts[name]["status"] == "ok", (name, arts[name]["error"])
    assert any(e.startswith("truncated_int8_tflite") for e in bench["report"]["errors"])


def test_a_hanging_runner_times_out_without_stopping_the_bench(bench):
    rec = bench["report"]["artifacts"]["float32_onnx"]["runners"]
    assert rec["hangs"]["status"] == "timeout"
    assert rec["onnxruntime"]["status"] == "ok"


def test_runner_results_and_metrics(bench):
    arts = bench["report"]["artifacts"]
    f = arts["float32_tflite"]["runners"]
    assert f["litert"]["metrics"]["cross"]["max_abs"] < 1e-5
    assert f["onnxruntime"]["status"] == "not_applicable"
    # TFLite Micro runs the float model too (an M4F/M7 has an FPU), and equals LiteRT up to rounding
    assert f["tflm"]["status"] == "ok" and f["tflm"]["metrics"]["cross"]["max_abs"] < 1e-5
    assert f["tflite_runtime"]["status"] in ("skipped", "ok")
    q = arts["int8_tflite"]["runners"]
    assert q["tflm"]["status"] == "ok" and q["tflm"]["arena"]["min_arena_bytes"] == bench["need"]
    assert q["tflm"]["arena"]["cached"] is True
    assert q["tflm"]["metrics"]["cross"]["rmse"] < 0.1 and "truth" in q["tflm"]["metrics"]
    assert q["litert"]["latency_host"]["kind"] == "measured" and q["litert"]["latency_host"]["n"] >= 50
    s = arts["stream_float32_tflite"]
    assert s["runners"]["litert"]["details"]["plan"] == "stepped"
    assert s["runners"]["litert"]["metrics"]["cross"]["max_abs"] < 1e-5
    assert s["analysis"]["invokes_per_window"] == T
    assert arts["float32_onnx"]["runners"]["onnxruntime"]["metrics"]["cross"]["max_abs"] < 1e-5


def test_memory_and_device_figures_are_labelled(bench):
    a = bench["report"]["artifacts"]["int8_tflite"]
    assert a["memory"]["model_bytes"]["kind"] == "measured"
    assert a["memory"]["state_bytes"]["value"] > 0
    for dev in a["devices"].values():
        assert dev["latency"]["kind"] == "estimated" and dev["latency"]["method"]
        assert dev["fit"]["ram"]["kind"] in ("measured", "estimated", "emulated")
    assert a["devices"]["cortex_m4f"]["latency_emulated"]["kind"] == "emulated"
    assert a["devices"]["cortex_a53"]["latency_emulated"] is None
    assert a["devices"]["cortex_m4f"]["latency"]["value"] > a["devices"]["cortex_a53"]["latency"]["value"]


def _dicts(o):
    """Every dict inside a JSON value, o itself included."""
    if isinstance(o, dict):
        yield o
    for v in o.values() if isinstance(o, dict) else o if isinstance(o, list) else ():
        yield from _dicts(v)


def test_every_figure_is_labelled_measured_estimated_or_emulated(bench):
    kinds = [d["kind"] for d in _dicts(bench["report"]["artifacts"]) if "kind" in d]
    assert kinds and set(kinds) <= {"measured", "estimated", "emulated"}
    mem = bench["report"]["artifacts"]["int8_tflite"]["memory"]
    assert mem["ram_total_bytes"] == {**mem["ram_total_bytes"], "value": bench["need"], "kind": "measured"}
    assert mem["arena_bytes"]["reported"] <= bench["need"] and mem["peak_rss_bytes"]["value"] > 0
    assert bench["report"]["artifacts"]["float32_onnx"]["memory"]["ram_total_bytes"]["kind"] == "estimated"


def test_fit_verdict_flips_when_sram_is_below_the_measured_need(bench):
    devs = bench["report"]["artifacts"]["int8_tflite"]["devices"]
    assert devs["cortex_m4f"]["fit"]["verdict"] == "fits"
    assert devs["exact"]["fit"]["verdict"] == "fits" and devs["exact"]["fit"]["ram"]["margin"] == 0
    assert devs["tight"]["fit"]["verdict"] == "does not fit"
    assert devs["tight"]["fit"]["ram"]["margin"] == -1 and devs["tight"]["fit"]["flash"]["fits"]


def test_fit_unit():
    p = load_profile("cortex_m4f")
    mem = {"model_bytes": {"value": 10_000, "kind": "measured"}}
    arena = {"status": "ok", "min_arena_bytes": 5_000}
    ok = fit(p, mem, arena=arena)
    assert ok["verdict"] == "fits" and ok["ram"]["need"] == 5_000 + p.runtime_sram_bytes
    big = fit(p, {"model_bytes": {"value": p.flash_bytes, "kind": "measured"}}, arena=arena)
    assert big["verdict"] == "does not fit" and not big["flash"]["fits"]


def test_unknown_device_and_missing_inputs_are_bad_input(tiny_artifacts, tmp_path):
    with pytest.raises(BadInput, match="cortex_m4f"):
        bench_model(tiny_artifacts, ["no_such_board"], tmp_path / "b.json")
    with pytest.raises(BadInput, match="manifest"):
        bench_model(tmp_path, ["cortex_m4f"], tmp_path / "b.json")
    art = tmp_path / "a"
    art.mkdir()
    (art / "manifest.json").write_text(json.dumps({"artifacts": {}, "data": {"file": "data.npz"}}))
    np.savez(art / "data.npz", x_eval=np.zeros((2, 3, 1), np.float32))
    with pytest.raises(BadInput, match="y_float"):
        bench_model(art, ["cortex_m4f"], tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()


class Prepares(Runner):
    """Measures a figure before its run (as TFLite Micro measures its arena) and shares it with the
    runners after it; refuses streaming artifacts before running them."""
    name, formats, target = "prepares", ("tflite",), "-"

    def prepare(self, model_path, x_path, config, extra, progress):
        if extra["artifact"].get("streaming"):
            return {}, {"runner": self.name, "runner_kind": self.kind, "status": "error",
                        "error": "refused before the run"}
        return {"probe": {"status": "ok", "bytes": Path(model_path).stat().st_size}}, None

    def run(self, model_path, x_path, out_path, config, extra=None):
        with np.load(x_path) as d:
            np.savez(out_path, out_0=np.zeros((d["x"].shape[0], 1), np.float32))
        return {"runner": self.name, "runner_kind": self.kind, "status": "ok", "error": "",
                "details": {"probe_in_extra": extra["probe"]["bytes"]}}

    def shared_figures(self, record):
        return {"probe_shared": record["probe"]} if record.get("status") == "ok" else {}


class Sees(Prepares):
    name = "sees"

    def prepare(self, model_path, x_path, config, extra, progress):
        return {}, None

    def run(self, model_path, x_path, out_path, config, extra=None):
        rec = super().run(model_path, x_path, out_path, config, {"probe": {"bytes": 0}})
        rec["details"] = {"shared": extra.get("probe_shared")}
        return rec

    def shared_figures(self, record):
        return {}


def test_the_bench_runs_every_runner_through_the_same_hooks(tiny_artifacts, tmp_path):
    """prepare() figures reach run() and the record, a prepare() failure stands for the run, and
    shared_figures() reach the runners after it: no runner is special-cased by name."""
    RUNNERS["prepares"], RUNNERS["sees"] = Prepares, Sees
    try:
        rep = bench_model(tiny_artifacts, ["cortex_m4f"], tmp_path / "b.json", progress=lambda *_: None,
                          runners=["prepares", "sees"], config=RunConfig(warmup=0, runs=1, timeout_s=60),
                          cache_dir=tmp_path / "cache", streaming=False)
    finally:
        RUNNERS.pop("prepares", None)
        RUNNERS.pop("sees", None)
    a = rep["artifacts"]["float32_tflite"]
    size = a["bytes"]
    assert a["runners"]["prepares"]["probe"] == {"status": "ok", "bytes": size}
    assert a["runners"]["prepares"]["details"]["probe_in_extra"] == size
    assert a["runners"]["sees"]["details"]["shared"] == {"status": "ok", "bytes": size}
    s = rep["artifacts"]["stream_float32_tflite"]["runners"]
    assert s["prepares"]["status"] == "error" and s["sees"]["details"]["shared"] is None
    assert "stream_float32_tflite/prepares: error: refused before the run" in rep["errors"]


def test_the_long_stream_signal_comes_from_the_task(tmp_path):
    """edge.tasks gives the bench the task's own series, standardized as in training; a model of
    independent sequences or without training.json gets a reason instead."""
    from edge.tasks import get_task
    from edge.tasks.long_stream import long_stream_signal, signal_loader
    art = tmp_path / "seattle_temp"
    assert "training.json" in long_stream_signal(get_task("seattle_temp"), art)["reason"]
    (art / "train").mkdir(parents=True)
    prep = {"features": ["temp_degF"], "standardize": {"mean": [50.0], "std": [10.0]}}
    (art / "train" / "training.json").write_text(json.dumps({"preprocessing": prep}))
    task = get_task("seattle_temp")
    sig = task.long_stream_signal(art)
    raw = task.raw_series()
    assert sig["status"] == "ok" and sig["name"] == "seattle_temps" and sig["rows"] == len(raw) == 8759
    assert sig["passes"] == 2 and sig["signal"].shape == (2 * 8759, 1) and sig["signal"].dtype == np.float32
    np.testing.assert_array_equal(sig["signal"][:8759], ((raw - 50.0) / 10.0).astype(np.float32))
    np.testing.assert_array_equal(sig["signal"][8759:], sig["signal"][:8759])
    none = long_stream_signal(get_task("japanese_vowels"), art)
    assert none["status"] == "not_applicable" and "not one continuous series" in none["reason"]
    assert long_stream_signal(None, art)["status"] == "not_applicable"
    # the bench command's loader: the same signal, loaded in a child process into a file
    loaded = signal_loader("seattle_temp", art, tmp_path)()
    assert {k: v for k, v in loaded.items() if k != "signal_path"} == {k: v for k, v in sig.items() if k != "signal"}
    np.testing.assert_array_equal(np.load(loaded["signal_path"]), sig["signal"])


def test_an_unchanged_bench_is_reused_and_refresh_measures_again(tiny_artifacts, tmp_path):
    kw = dict(devices=["cortex_a53"], out_path=tmp_path / "bench.json", runners=["litert"], streaming=False,
              config=RunConfig(warmup=1, runs=3), cache_dir=tmp_path / "cache")
    said = []
    first = bench_model(tiny_artifacts, progress=lambda *_: None, **kw)
    again = bench_model(tiny_artifacts, progress=said.append, **kw)
    assert again["created"] == first["created"] and any("up to date" in m for m in said)
    other = bench_model(tiny_artifacts, progress=lambda *_: None, **{**kw, "config": RunConfig(warmup=1, runs=4)})
    assert other["inputs_key"] != first["inputs_key"]          # another setting: measured again
    said.clear()
    fresh = bench_model(tiny_artifacts, progress=said.append, refresh=True,
                        **{**kw, "config": RunConfig(warmup=1, runs=4)})
    assert not any("up to date" in m for m in said) and fresh["seconds"] > 0
