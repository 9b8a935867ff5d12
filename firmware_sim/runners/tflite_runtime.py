"""The optional tflite_runtime runner (the last standalone TFLite interpreter release), run by
the LiteRT child with the tflite_runtime module."""
from __future__ import annotations

import importlib.util

from .base import Runner
from .litert import child_tflite


def child_tflite_runtime(model_path, x_path, out_path, cfg):
    return child_tflite(model_path, x_path, out_path, cfg, "tflite_runtime.interpreter")


class TFLiteRuntimeRunner(Runner, name="tflite_runtime", formats=("tflite",), child=child_tflite_runtime):
    """tflite-runtime (optional, last release 2.14.0)."""

    def available(self):
        if importlib.util.find_spec("tflite_runtime") is None:
            return False, ("tflite_runtime is not installed (optional backend; its last release, 2.14.0, "
                           "fails under numpy 2 and rejects newer op versions)")
        return True, ""
