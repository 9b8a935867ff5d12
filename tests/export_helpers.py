"""Helpers of the export tests: child-side builders (isolate targets; the tests put this folder
on PYTHONPATH) that report success for a file nothing can run, and the .tflite and .onnx runs
the tests trust independently of groundfloor.runtime."""
import numpy as np

from groundfloor.ioquant import quantize_input


def text_file(folder, name, text):
    """folder/name holding text: a config, profile or space file written by a test."""
    path = folder / name
    path.write_text(text)
    return path


def model_file(folder, name, content):
    """folder/name holding content (bytes), or absent for None: a bad model file for the loaders."""
    path = folder / name
    if content is not None:
        path.write_bytes(content)
    return path


def litert_outputs(path, x, art, stream=False) -> np.ndarray:
    """The model's own (not dequantized) outputs on windows x, each from a fresh state, in LiteRT
    with its reference kernels (XNNPACK reorders float sums; the tests check the conversion, not
    a delegate). stream: fed one step [1, 1, F] per call. art: the artifact's manifest entry."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(str(path), num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def run(window):
        it.reset_all_variables()  # independent windows: the fused LSTM keeps h and c otherwise
        for chunk in ([step[None, None] for step in window] if stream else [window[None]]):
            it.set_tensor(i, quantize_input(chunk, art["io"]["inputs"][0]))
            it.invoke()
        return it.get_tensor(o).copy()

    return np.concatenate([run(w) for w in x])


def onnxruntime_outputs(path, x) -> np.ndarray:
    """The model's outputs on windows x in onnxruntime (CPU), one window per run."""
    import onnxruntime as ort
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: w[None]})[0] for w in x])


def write_unrunnable(out_path, **kwargs):
    """Writes a .tflite no runtime can open (a header and zeros) and calls it converted."""
    with open(out_path, "wb") as f:
        f.write(b"\x1c\x00\x00\x00TFL3" + bytes(120))
    return {"seconds": 0.0, "options": {"mode": "unrunnable"}}
