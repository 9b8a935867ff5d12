"""The clipping view: values outside the int8 range of the graph's inputs and outputs.

Inputs, float outputs and targets (the Seattle failure: targets the int8 output cannot
represent)."""
import numpy as np

from export.ranges import clip_fraction, int8_range


def _row(label, t, what, v, to_phys) -> dict:
    lo, hi = int8_range(t.sc, t.zp)
    return {"tensor": label, "name": t.name, "range": [lo, hi],
            "range_units": [to_phys(lo), to_phys(hi)], "what": what,
            "fraction_clipped": clip_fraction(v, lo, hi),
            "below": float(np.mean(v < lo)), "above": float(np.mean(v > hi))}


def _quantized_int8(graph, indices):
    return [(k, graph.tensors[i]) for k, i in enumerate(indices)
            if graph.tensors[i].dtype == "INT8" and graph.tensors[i].scale is not None]


def clipping_report(graph, x, y_float=None, y_true=None, units=None) -> dict:
    """Graph inputs and outputs whose int8 range cuts off data; units=(scale, offset) maps
    model units to physical ones (e.g. standardized temperature to degF) for the edges."""
    to_phys = (lambda v: v * units[0] + units[1]) if units else (lambda v: v)
    rows = []
    for k, t in _quantized_int8(graph, graph.inputs):
        xv = np.asarray(x, np.float64)
        row = _row(f"input[{k}]", t, "input values", xv, to_phys)
        lo, hi = row["range"]
        outside = (xv < lo) | (xv > hi)
        row["fraction_of_samples_touched"] = float(np.mean(outside.reshape(len(xv), -1).any(axis=1)))
        row["per_feature"] = [clip_fraction(xv[..., f], lo, hi) for f in range(xv.shape[-1])]
        rows.append(row)
    for k, t in _quantized_int8(graph, graph.outputs):
        for what, v in (("float model outputs", y_float), ("targets", y_true)):
            if v is not None:
                rows.append(_row(f"output[{k}]", t, what, np.asarray(v, np.float64), to_phys))
    return {"rows": rows, "clipping": [r for r in rows if r["fraction_clipped"] > 0]}
