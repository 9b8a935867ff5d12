"""Measures the README's "Your PyTorch model" table: every setting of tests/test_import_torch.py
through both torch.onnx.export exporters, the rebuild's max abs difference from torch, and the
lint's route for each recurrent layer. Run: .venv/bin/python tests/torch_import_table.py [int8 | states]"""
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import torch  # noqa: E402

from export import keras_bridge  # noqa: E402
from export.lint import lint_file  # noqa: E402
from export import pipeline  # noqa: E402
from test_import_torch import EXPORTERS, SETTINGS, _int8_outputs, _outputs  # noqa: E402
from torch_models import export_onnx, make_net, torch_outputs, windows  # noqa: E402


def main():
    folder = Path(tempfile.mkdtemp())
    x = windows(32)
    np.savez(folder / "d.npz", x=x)
    print("| setting | exporter | rebuild | max abs diff vs torch | route |")
    print("| --- | --- | --- | --- | --- |")
    for name, cfg in SETTINGS.items():
        net = make_net(torch, **cfg)
        for exporter, dynamo in EXPORTERS.items():
            path = export_onnx(torch, net, folder / f"{name}_{exporter}.onnx", cfg.get("batch_first", True), dynamo)
            model, _ = keras_bridge.load_any(path, data_path=folder / "d.npz")
            rebuilt = keras_bridge.rebuild_batch1(model)
            diff = float(np.max(np.abs(_outputs(rebuilt, x) - torch_outputs(torch, net, x, cfg.get("batch_first", True))
                                       .reshape(len(x), *rebuilt.output_shape[1:]))))
            report = lint_file(path)
            layers = " -> ".join(r.cls if r.cls != "Bidirectional" else "Bidirectional" for r in report.rows)
            route = ", ".join(sorted({r.verdict for r in report.rows if r.verdict != "native"})) or "native"
            print(f"| {name} | {exporter} | {layers} | {diff:.1e} | {route} |", flush=True)


def int8():
    """edge export's int8 TFLite of the LSTM and GRU settings: ops, size, drift from torch."""
    folder = Path(tempfile.mkdtemp())
    x = windows(40)
    np.savez(folder / "d.npz", x=x, y=x[:, -1, :1])
    print("| model | tflite_int8 ops | bytes | max / median abs drift vs torch (8 held-out windows) |")
    print("| --- | --- | --- | --- |")
    for name, cfg in INT8_ROWS.items():
        net = make_net(torch, **cfg)
        path = export_onnx(torch, net, folder / f"{name}.onnx", dynamo=True)
        m = pipeline.export_model(path, folder / "d.npz", folder / name, only={"tflite_int8"}, streaming=False,
                                  progress=lambda *_: None)
        art = m["artifacts"]["tflite_int8"]
        held_out = x[32:]
        drift = np.abs(_int8_outputs(folder / name / art["file"], held_out).reshape(-1)
                       - torch_outputs(torch, net, held_out).reshape(-1))
        ops = ", ".join(f"{k} {v}" for k, v in sorted(art["op_counts"].items(), key=lambda kv: -kv[1]))
        print(f"| {name} + Linear | {ops} | {art['bytes']:,} | {drift.max():.3g} / {np.median(drift):.3g} |",
              flush=True)


INT8_ROWS = {"nn.LSTM(3, 8)": {}, "nn.GRU(3, 8)": {"cell": "GRU"},
             "nn.LSTM(3, 8, bidirectional=True), head(out[:, -1])": {"bidirectional": True}}


def states():
    """model(x, (h0, c0)): the h0 / c0 inputs fed as zeros, both exporters, diff from torch."""
    from test_import_torch import STATE_CASES, _state_outputs
    from torch_models import make_state_net, zero_state
    folder = Path(tempfile.mkdtemp())
    x = windows(32)
    np.savez(folder / "d.npz", x=x)
    print("| model(x, state) | exporter | max abs diff vs torch (zeros fed) | route |")
    for name, case in STATE_CASES.items():
        net = make_state_net(*case)
        for exporter, dynamo in EXPORTERS.items():
            path = export_onnx(torch, net, folder / f"{name}_{exporter}.onnx", dynamo=dynamo, extra_args=(zero_state(net),))
            model, _ = keras_bridge.load_any(path, data_path=folder / "d.npz")
            diff = float(np.max(np.abs(_outputs(keras_bridge.rebuild_batch1(model), x) - _state_outputs(net, x))))
            route = ", ".join(sorted({r.verdict for r in lint_file(path).rows if r.verdict != "native"}))
            print(f"| {name} {case} | {exporter} | {diff:.1e} | {route} |", flush=True)


if __name__ == "__main__":
    {"int8": int8, "states": states}.get(sys.argv[-1], main)()
