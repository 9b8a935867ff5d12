"""Runners: one interface (base.Runner) over every runtime that can execute an exported artifact.

base holds the interface, RunConfig, the registry and the child-side helpers; one module per runtime
registers itself (in this order: litert, onnxruntime, tflm, tflite_runtime, emulated)."""
from .base import (RUNNERS, RunConfig, Runner, get_runner, latency_stats, post_output, prep_input,  # noqa: F401
                   register_runner)
from .litert import LiteRTRunner  # noqa: F401
from .onnxruntime import OnnxRuntimeRunner  # noqa: F401
from .tflm import TFLMRunner, arena_search  # noqa: F401
from .tflite_runtime import TFLiteRuntimeRunner  # noqa: F401
from .emulated import EMULATED_BOARDS, EMULATED_WINDOWS, EmulatedRunner, emulation_board  # noqa: F401
