"""The LiteRT runner (ai-edge-litert's TFLite interpreter, one thread), whose child also serves
tflite_runtime (the same interpreter API)."""
from __future__ import annotations

import importlib

from .base import Runner, drive, finish, io_dtype, io_spec, load_x, plan_chunks, spec_record


def child_tflite(model_path, x_path, out_path, cfg, module="ai_edge_litert.interpreter"):
    """LiteRT (or tflite_runtime: same API) interpreter, one thread."""
    Interpreter = importlib.import_module(module).Interpreter
    it = Interpreter(model_path=model_path, num_threads=1)
    it.allocate_tensors()
    x = load_x(x_path, cfg["max_samples"])
    ins = [io_spec(d) for d in it.get_input_details()]
    outs = [io_spec(d) for d in it.get_output_details()]
    in_idx = it.get_input_details()[0]["index"]
    out_idx = [d["index"] for d in it.get_output_details()]
    if len(ins) != 1:
        raise ValueError(f"expected one model input, found {len(ins)}")
    plan = plan_chunks(ins[0][0], x)
    arrays = drive(x, plan, ins[0], outs,
                   set_input=lambda a: it.set_tensor(in_idx, a),
                   invoke=it.invoke,
                   get_output=lambda k: it.get_tensor(out_idx[k]),
                   reset=it.reset_all_variables, cfg=cfg)
    return finish(out_path, arrays, {"plan": plan, "inputs": [spec_record(s) for s in ins],
                                     "outputs_spec": [spec_record(s) for s in outs],
                                     "threads": 1, "module": module})


class LiteRTRunner(Runner, name="litert", formats=("tflite",), child=child_tflite):
    """LiteRT interpreter (ai-edge-litert), one thread, default delegates."""
    footprint_for = ("tflite",)

    def accepts(self, artifact):
        if io_dtype(artifact) == "int16" and "UNIDIRECTIONAL_SEQUENCE_LSTM" in artifact.get("ops", []):
            return False, "LiteRT has no 16x8 sequence-LSTM kernel (op version 5 refused); TFLite Micro runs it"
        return True, ""
