"""The attribution of the drift to quantization points, by the float emulation.

The output drift with one point on alone, and with all points but one (how much keeping
that point float would remove)."""
from .figures import rmse
from .floatmodel import emulate, quant_points


def attribute(chain, x, y_float, u):
    """(rows per point, the emulated drift with every point on) in model units; the rows'
    drifts are in report units (u per model unit)."""
    def drift_with(on):
        return rmse(emulate(chain, x, on).reshape(len(x), -1), y_float)

    points = quant_points(chain)
    all_on = frozenset(points)
    emu_drift = drift_with(all_on)
    rows = []
    for p in points:
        alone = drift_with(frozenset([p]))
        without = drift_with(all_on - {p})
        rows.append({"point": p, "drift_alone": alone * u, "drift_without": without * u,
                     "share_alone": (alone ** 2 / emu_drift ** 2) if emu_drift > 0 else 0.0,
                     "removed_if_kept_float": (1 - without ** 2 / emu_drift ** 2) if emu_drift > 0 else 0.0})
    return rows, emu_drift


def annotate(tensors, attribution):
    """Copy each point's attribution into its row of the tensor table."""
    by_point = {a["point"]: a for a in attribution}
    for t in tensors:
        t.update({k: v for k, v in by_point.get(t["point"], {}).items() if k != "point"})


def emulation_summary(emu_drift, runtime_drift, u) -> dict:
    """How much of the runtime's drift the emulation with every point on explains."""
    return {"drift_rmse_all_points": emu_drift * u, "runtime_drift_rmse": runtime_drift * u,
            "explained": (emu_drift ** 2 / runtime_drift ** 2) if runtime_drift > 0 else 1.0}
