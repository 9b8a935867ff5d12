"""The integer reference on the evaluation windows, code for code against the runtimes.

firmware_sim.mcu.reference is meant to equal TFLite Micro exactly; LiteRT's own int8 LSTM
kernel is 1-2 LSB apart now and then."""
import numpy as np

from firmware_sim.mcu import reference

REFERENCE = "firmware_sim.mcu.reference (TFLite Micro's integer arithmetic)"


def tracked_tensors(chain, graph):
    """The tensors compared: each layer's output and the graph outputs, with their labels
    {index: (layer, what)}."""
    tracked = [layer["q"]["op"].outputs[0] for layer in chain]
    labels = {i: (layer["name"], "hidden sequence" if layer["kind"] == "lstm" else "dense output")
              for i, layer in zip(tracked, chain)}
    for k, i in enumerate(graph.outputs):
        if i not in labels:
            labels[i] = ("graph", f"output[{k}]")
            tracked.append(i)
    return tracked, labels


def run_reference(prog, x_raw, tracked):
    """The bit-exact integer reference on each window: per LSTM layer name its stacked
    intermediates ([N, T, H] codes, scales), and the codes of the tracked tensors [N, size]."""
    caps, vals = {}, {i: [] for i in tracked}
    for w in x_raw:
        cap = {}
        _, v = reference.run(prog, w, return_all=True, capture=cap)
        for name, c in cap.items():
            caps.setdefault(name, []).append(c)
        for i in tracked:
            vals[i].append(np.asarray(v[i]).reshape(-1))
    ref = {}
    for name, lst in caps.items():
        ref[name] = {k: np.stack([c[k] for c in lst]) for k, v in lst[0].items() if isinstance(v, np.ndarray)}
        ref[name].update(scales=lst[0]["scales"], zero_points=lst[0]["zero_points"])
    return ref, {i: np.stack(v).astype(np.int64) for i, v in vals.items()}


def compare(ref_codes, got_codes) -> dict:
    d = np.abs(ref_codes - np.asarray(got_codes, np.int64).reshape(ref_codes.shape))
    return {"codes": int(d.size), "max_lsb_diff": int(d.max()) if d.size else 0,
            "fraction_equal": float(np.mean(d == 0)) if d.size else 1.0}


def _pooled(pairs: dict) -> dict:
    """{"hidden": fraction equal, "hidden_codes", "hidden_max_lsb_diff", "output"...} over the
    (reference, runtime) code pairs of each group."""
    summary = {}
    for key, group in pairs.items():
        if group:
            c = compare(np.concatenate([a.reshape(-1) for a, _ in group]),
                        np.concatenate([np.asarray(b).reshape(-1) for _, b in group]))
            summary[key] = c["fraction_equal"]
            summary[f"{key}_codes"] = c["codes"]
            summary[f"{key}_max_lsb_diff"] = c["max_lsb_diff"]
    return summary


def check_runtimes(codes, tracked, labels, graph, runtimes, n):
    """(reference_check rows, agreement summary) of the reference codes against each runtime's
    codes; runtimes: [(name, {tensor index: codes [N, ...]})]."""
    checks = []
    agreement = {"reference": REFERENCE, "samples": n}
    for rname, got in runtimes:
        pairs = {"hidden": [], "output": []}
        for i in tracked:
            if i not in got:
                continue
            c = compare(codes[i], got[i][:n])
            checks.append({"runtime": rname, "layer": labels[i][0], "tensor": labels[i][1],
                           "compared": n, **c})
            if labels[i][1] == "hidden sequence":
                pairs["hidden"].append((codes[i], got[i][:n]))
            if i in graph.outputs:
                pairs["output"].append((codes[i], got[i][:n]))
        agreement["tflm" if rname == "TFLite Micro" else "litert"] = _pooled(pairs)
    return checks, agreement
