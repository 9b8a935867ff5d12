"""The public on-device API: `from edge import runtime; runtime.load(path).predict(x)`.

Implemented in groundfloor/runtime.py (numpy + LiteRT or onnxruntime, never TensorFlow), so the
export and bench stages use the same code the application does. `python -m edge.runtime
MODEL DATA.npz` prints predictions for the first windows of x_eval.
"""
from groundfloor.runtime import Model, ModelRejected, Stream, load, main

__all__ = ["load", "Model", "Stream", "ModelRejected"]

if __name__ == "__main__":
    main()
