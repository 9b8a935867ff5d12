"""`edge lint`: a pre-flight check of a Keras model's layers against what the TFLite
converter and the fused LSTM kernel actually do, before any conversion is attempted.

    from export.lint import lint_model, lint_file
    report = lint_model(model)          # a tf-keras (Keras 2) or Keras 3 model
    report = lint_file("model.keras")   # .keras, .h5 or a SavedModel directory
    print(report.format_table())
    report.ok, report.refused, report.needs_unroll, report.overrides, report.to_json()

One row per layer, with a verdict:
  fused    -> tf-keras LSTM that becomes the fused UNIDIRECTIONAL_SEQUENCE_LSTM op
              (int8 works; TFLite Micro arena ~4 KB)
  unrolled -> converts correctly only when rebuilt with unroll=True (no fused op: a
              500-1000 op graph and a 137-245 KB TFLite Micro arena)
  native   -> ordinary ops (Dense, Conv1D, Dropout, ...)
  refused  -> no route converts to a correct model
Verdicts describe the tf-keras rebuild (batch 1) that `edge export` converts: a Keras 3
model is never converted as such (every Keras 3 RNN is a WHILE loop whose int8
calibration segfaults, FIELD_NOTES).

`report.overrides` maps layer names to the config changes the rebuild should make
(unroll=True/False, stateful=False, recurrent_dropout=0.0); `needs_unroll` lists the layers
to rebuild with unroll=True.

The rules are in export/lint_rules.py, the measurements behind them in
export/lint_measured.py (export/lint_probe.py; re-run it with `python -m export.lint_probe`
when tensorflow / tf-keras / tf2onnx versions move).
Every Keras RNN setting probed has a correct conversion route (fused, or unrolled); the lint
refuses what `edge export` itself cannot take: time_major layers (export feeds batch-major
windows), models with more than one input or output (a "(model)" row), Keras 3 activations
the tf-keras rebuild cannot reproduce exactly (export/activations.py), and layers whose ops
have no TFLite builtin (traced custom layers, custom RNN cells, classes that cannot be
imported, ConvLSTM). tests/test_lint_export.py checks every probe case against what export does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from groundfloor.errors import BadInput
from export.lint_rules import FUSED, NATIVE, REFUSED, UNROLLED, VERDICT_RANK, LayerInfo, finding_for, sub_config


@dataclass
class LintRow:
    layer: str
    cls: str
    verdict: str
    reason: str

    def as_dict(self):
        return {"layer": self.layer, "class": self.cls, "verdict": self.verdict,
                "reason": self.reason}


@dataclass
class LintReport:
    rows: list[LintRow]
    framework: str = "tf_keras"
    notes: list[str] = field(default_factory=list)     # model-level remarks
    overrides: dict[str, dict] = field(default_factory=dict)  # layer -> config changes

    @property
    def refused(self) -> list[LintRow]:
        return [r for r in self.rows if r.verdict == REFUSED]

    @property
    def needs_unroll(self) -> list[str]:
        return [r.layer for r in self.rows if r.verdict == UNROLLED]

    @property
    def ok(self) -> bool:
        return not self.refused

    def verdict_of(self, layer_name: str) -> str:
        for r in self.rows:
            if r.layer == layer_name:
                return r.verdict
        raise KeyError(layer_name)

    def to_json(self) -> list[dict]:
        return [r.as_dict() for r in self.rows]

    def format_table(self, width: int = 100) -> str:
        heads = ("layer", "class", "verdict", "reason")
        w0 = max([len(heads[0])] + [len(r.layer) for r in self.rows])
        w1 = max([len(heads[1])] + [len(r.cls) for r in self.rows])
        w2 = max(len(v) for v in VERDICT_RANK)
        w3 = max(20, width - w0 - w1 - w2 - 6)
        lines = [f"{heads[0]:<{w0}}  {heads[1]:<{w1}}  {heads[2]:<{w2}}  {heads[3]}",
                 f"{'-' * w0}  {'-' * w1}  {'-' * w2}  {'-' * w3}"]
        for r in self.rows:
            chunks = _wrap(r.reason, w3)
            lines.append(f"{r.layer:<{w0}}  {r.cls:<{w1}}  {r.verdict:<{w2}}  {chunks[0]}")
            pad = " " * (w0 + w1 + w2 + 6)
            lines.extend(pad + c for c in chunks[1:])
        n = {v: sum(r.verdict == v for r in self.rows) for v in VERDICT_RANK}
        lines.append("")
        lines.append(("OK" if self.ok else "REFUSED") + ": " +
                     ", ".join(f"{n[v]} {v}" for v in (FUSED, UNROLLED, NATIVE, REFUSED)))
        if self.needs_unroll:
            lines.append("rebuild with unroll=True: " + ", ".join(self.needs_unroll))
        lines.extend("note: " + s for s in self.notes)
        return "\n".join(lines)


def _wrap(text, width):
    words, out, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            out.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    return out + [cur] if cur or not out else out



# Which layers pass an incoming mask on (Keras semantics, both versions); RNNs do only
# with return_sequences=True.
_MASK_PASS = {"Dense", "Dropout", "SpatialDropout1D", "Activation", "GaussianNoise",
              "GaussianDropout", "AlphaDropout", "TimeDistributed", "Masking", "ReLU",
              "LeakyReLU", "Softmax", "BatchNormalization", "LayerNormalization", "Add",
              "Concatenate", "Multiply", "Subtract", "Average", "Maximum", "Minimum", "Lambda"}
_RNNS = {"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "LSTMV1", "GRUV1", "CuDNNLSTM"}


def _makes_mask(cls, cfg):
    return cls == "Masking" or (cls == "Embedding" and bool(cfg.get("mask_zero")))


def _passes_mask(cls, cfg):
    if cls in _RNNS:
        inner = sub_config(cfg["layer"])[1] if cls == "Bidirectional" else cfg
        return bool(inner.get("return_sequences"))
    return cls in _MASK_PASS


# ------------------------------------------------------------------------------------------
def _framework(model) -> str:
    mod = type(model).__module__
    for base in type(model).__mro__:
        if base.__module__.startswith("tf_keras"):
            return "tf_keras"
    return "keras3" if mod.startswith("keras") or "keras" in mod else "tf_keras"


def _live_mask(layer):
    """True/False if the layer's symbolic input carries a Keras mask; None if unreadable."""
    try:
        inp = layer.input
    except Exception:  # noqa: BLE001 - shared layers / no inbound node
        return None
    tensors = inp if isinstance(inp, (list, tuple)) else [inp]
    try:
        return any(getattr(t, "_keras_mask", None) is not None for t in tensors)
    except Exception:  # noqa: BLE001
        return None


def _inbound_names(layer_cfg) -> list[str]:
    """Names of the layers feeding a layer, from a functional config (both formats)."""
    names = []

    def walk(x):
        if isinstance(x, dict):
            if "keras_history" in x:
                names.append(x["keras_history"][0])
                return
            if "config" in x and isinstance(x["config"], dict) and "keras_history" in x["config"]:
                names.append(x["config"]["keras_history"][0])
                return
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            if len(x) >= 3 and isinstance(x[0], str) and isinstance(x[1], int):
                names.append(x[0])
                return
            for v in x:
                walk(v)
    walk(layer_cfg.get("inbound_nodes", []))
    return names


def _layer_entries(model_cfg: dict) -> list[dict]:
    cfg = model_cfg.get("config", model_cfg)
    layers = cfg.get("layers", []) if isinstance(cfg, dict) else []
    return [e for e in layers if isinstance(e, dict)] if isinstance(layers, list) else []


def _config_masks(entries: list[dict], sequential: bool) -> dict[str, bool]:
    """Does a mask reach each layer? Propagated through the config graph."""
    out_mask, reach = {}, {}
    prev = None
    for e in entries:
        cls, cfg = e.get("class_name", "?"), e.get("config", {}) or {}
        name = cfg.get("name", e.get("name", "?"))
        srcs = [prev] if sequential and prev else _inbound_names(e)
        masked = any(out_mask.get(s, False) for s in srcs)
        reach[name] = masked
        out_mask[name] = _makes_mask(cls, cfg) or (masked and _passes_mask(cls, cfg))
        prev = name
    return reach


def lint_model(model) -> LintReport:
    """Lint a live tf-keras or Keras 3 model (no rebuild, no conversion)."""
    fw = _framework(model)
    layers = list(getattr(model, "layers", []))
    try:
        mcfg = model.get_config()
    except Exception:  # noqa: BLE001 - subclassed models have no config
        mcfg = {}
    sequential = type(model).__name__ == "Sequential"
    cfg_masks = _config_masks(_layer_entries(mcfg), sequential)
    infos = []
    for layer in layers:
        cls = type(layer).__name__
        try:
            cfg = layer.get_config()
        except Exception:  # noqa: BLE001 - custom layer without get_config
            cfg = {"name": layer.name}
        masked = _live_mask(layer)
        if masked is None:
            masked = cfg_masks.get(layer.name, False)
        infos.append(LayerInfo(layer.name, cls, cfg, masked, layer, fw))
    report = _lint_infos(infos, fw, _model_notes(model, fw, layers))
    problem = _io_problem(model)
    if problem:   # export takes one input and one output (keras_bridge.io_problem)
        report.rows.append(LintRow("(model)", type(model).__name__, REFUSED, problem))
    return report


def _io_problem(model):
    from export.keras_bridge import io_problem
    try:
        return io_problem(model)
    except (AttributeError, ValueError, TypeError):   # subclassed, never called: no inputs to count
        return None


def lint_config(model_config: dict) -> LintReport:
    """Lint from a model config alone (a .keras config.json or an .h5 model_config), for
    files whose custom classes cannot be imported. Custom layers are refused (untraceable)."""
    cls = model_config.get("class_name", "")
    entries = _layer_entries(model_config)
    masks = _config_masks(entries, cls == "Sequential")
    infos = []
    for e in entries:
        lcls, lcfg = e.get("class_name", "?"), e.get("config", {}) or {}
        name = lcfg.get("name", e.get("name", "?"))
        if lcls == "InputLayer":
            continue
        infos.append(LayerInfo(name, lcls, lcfg, masks.get(name, False), None, "config"))
    return _lint_infos(infos, "config", ["linted from the saved config only (model did not load)"])


def _lint_infos(infos, fw, notes) -> LintReport:
    rows, overrides = [], {}
    for info in infos:
        if info.cls == "InputLayer":
            continue
        f = finding_for(info)
        rows.append(LintRow(info.name, info.cls, f.verdict, f.reason))
        if f.overrides:
            overrides[info.name] = dict(f.overrides)
    return LintReport(rows, fw, notes, overrides)


def _model_notes(model, fw, layers) -> list[str]:
    notes = []
    if fw == "keras3":
        notes.append("Keras 3 model: converted directly every RNN is a WHILE loop (int8 SIGSEGV); "
                     "verdicts are for the tf-keras rebuild (batch 1) that export performs")
    if type(model).__name__ not in ("Sequential", "Functional", "Model") and not hasattr(
            model, "_is_graph_network"):
        notes.append(f"subclassed model {type(model).__name__}: only its tracked layers are listed")
    try:
        shapes = [model.input_shape] if not isinstance(model.input_shape, list) else model.input_shape
        for s in shapes:
            if s and s[0] not in (1, None):
                notes.append(f"input batch {s[0]}: export pins batch 1 (the fused op needs it)")
            elif s and s[0] is None:
                notes.append("batch dimension is None: export pins it to 1 (None fails: "
                             "TensorListReserve needs a static element_shape)")
                break
    except Exception:  # noqa: BLE001 - no defined input
        pass
    return notes


# ------------------------------------------------------------------------------------------
def lint_file(path, trust_model_code: bool = False) -> LintReport:
    """Load a .keras (Keras 3), .h5 (tf-keras, then Keras 3) or SavedModel dir and lint it.
    A model whose custom classes cannot be imported is linted from its saved config. A file
    carrying Python code (a Lambda) is refused unless trust_model_code (export/model_code.py)."""
    from export import importers
    from export.keras_bridge import open_model
    from export.model_code import saved_config
    if importers.handles(path):   # ONNX / PyTorch: the rebuild's rows, or the refusal with its reason
        return importers.lint(path, trust_code=trust_model_code)
    model, _, errors = open_model(path, trust_code=trust_model_code)
    path = str(path)
    if model is not None:
        if not hasattr(model, "layers"):
            raise BadInput(path, "SavedModel is not a Keras model (no layers to lint)")
        return lint_model(model)
    cfg = None if os.path.isdir(path) else saved_config(path)
    if cfg and _layer_entries(cfg):
        report = lint_config(cfg)
        report.notes.append("load failed: " + (errors[-1] if errors else "unknown error"))
        return report
    raise BadInput(path, "cannot load as a Keras model (corrupt or unsupported): " +
                   (errors[-1] if errors else "unknown error"))
