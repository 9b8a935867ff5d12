"""What the TFLite converter, LiteRT, TFLite Micro and tf2onnx did with each Keras RNN
setting, measured by export/lint_probe.py: the record the rules in export/lint_rules.py are
written from. The table and how it was measured are in export/lint_measured.toml (data, beside
this file); re-run the probe and update it when tool versions move."""
import tomllib
from pathlib import Path

# {probe case: {"float32" | "int8" | "unroll_float32" | "unroll_int8" | "onnx" | "rebuilt_stateless":
#  what the probe summarised}}
MEASURED: dict[str, dict[str, str]] = tomllib.loads(
    Path(__file__).with_name("lint_measured.toml").read_text(encoding="utf-8"))
