"""Models from other frameworks (ONNX files, PyTorch programs) rebuilt as tf-keras models, each
with the source model kept beside it to verify the rebuild against."""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from groundfloor.errors import BadInput


@dataclass
class Source:
    """The original model, runnable on [N, T, F] windows; what the rebuild is verified against."""
    runtime: str                             # "onnxruntime" or "torch"
    run: Callable[[np.ndarray], np.ndarray]  # [N, T, F] -> outputs in the rebuild's layout
    notes: list


LINT_TIMESTEPS = 16   # window length a lint assumes where the model leaves it free and no data pins it
# Keras model -> its Source. Weak: a rebuilt model that goes away takes its source with it.
_SOURCES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _loaders():
    from export.importers import onnx_source, torch_programs
    return {".onnx": ("onnx", onnx_source.load), ".pt2": ("torch_export", torch_programs.load_exported),
            ".pt": ("torchscript", torch_programs.load_torchscript),
            ".pth": ("torchscript", torch_programs.load_torchscript)}


SUFFIXES = (".onnx", ".pt2", ".pt", ".pth")


def handles(path) -> bool:
    path = Path(path)
    return path.suffix.lower() in SUFFIXES and not path.is_dir()


def load(path, data_path=None, trust_code=False):
    """(tf-keras model, format name) for an ONNX file or PyTorch program. data_path pins dynamic
    input dimensions. BadInput (one line) for a file that cannot be read or rebuilt faithfully."""
    from export.importers.onnx_ir import Refusal
    try:
        return _load(path, data_path, trust_code)
    except Refusal as r:
        raise BadInput(path, f"cannot be rebuilt faithfully in tf-keras: {r}") from None


def _load(path, data_path, trust_code=False, shape=None):
    path = Path(path)
    fmt, loader = _loaders()[path.suffix.lower()]
    model, source = loader(path, shape or data_shape(data_path), trust_code)
    _SOURCES[model] = source
    return model, fmt


def source_of(model) -> Source | None:
    try:
        return _SOURCES.get(model)
    except TypeError:   # not weak-referenceable: not ours
        return None


def lint(path, data_path=None, trust_code=False):
    """The lint report of an imported model: the rebuild's rows, or the refusal that stops it."""
    from export.importers.onnx_ir import Refusal
    from export.lint import LintReport, LintRow, lint_model
    from export.lint_rules import REFUSED
    from export.keras_bridge import check_model_path
    path = check_model_path(path)
    fmt, _ = _loaders()[path.suffix.lower()]
    try:
        # no data in a lint: a free window length is linted at LINT_TIMESTEPS (export pins the data's)
        shape = None if data_path else (None, LINT_TIMESTEPS, None)
        model, fmt = _load(path, data_path, trust_code, shape)
    except Refusal as r:
        return LintReport([LintRow(node, op, REFUSED, reason) for node, op, reason in r.rows()], fmt,
                          [f"imported from {fmt}: the settings above have no faithful tf-keras rebuild"])
    report = lint_model(model)
    report.framework = fmt
    report.notes.insert(0, f"imported from {fmt} as a tf-keras rebuild (batch 1); verdicts are for it; "
                           f"export verifies it against {source_of(model).runtime} on the data")
    report.notes += source_of(model).notes
    return report


def data_shape(data_path):
    """[N, T, F] of the windows in an .npz data file (read without loading the arrays), or None."""
    if data_path is None or Path(data_path).suffix != ".npz" or not Path(data_path).exists():
        return None
    try:
        with np.load(data_path, allow_pickle=False, mmap_mode="r") as z:
            for key in ("x", "x_calib", "x_eval"):
                if key in z.files and z[key].ndim == 3:
                    return tuple(int(d) for d in z[key].shape)
    except Exception:  # noqa: BLE001 - export's data loader reports a bad data file itself
        return None
    return None
