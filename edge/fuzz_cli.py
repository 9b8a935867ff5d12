"""Bad inputs through the `edge` command itself: mutated model files (.h5, .keras, SavedModel),
data files (.npz, .csv) and configs, each given to `edge export` beside a folder that already
holds an export. Each one must end in one line on stderr and exit code 2, and leave every file
of the existing export byte-identical.

A mutation can leave a valid input (a flipped bit in a weight is a different model, not a bad
file). Such inputs are told apart first with the export's own loaders (model: load + lint;
data: the data loader; config: config + budgets) and counted as "valid", without a full export.
The calls run in one worker process (TensorFlow imported once); a crash or hang of the command
is counted, not fatal to the campaign.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np

VICTIM = "victim"     # the existing export every bad input is tried beside
CALL_TIMEOUT = 300.0  # a refusal takes about a second (a hung reader: the probe timeout, 90 s)


def snapshot(folder: Path) -> dict:
    """{relative path: sha256} of every file under folder (hidden ones included), but for an
    empty lock file: taking the folder's lock creates it, and it holds nothing between runs."""
    from groundfloor.locks import LOCK_NAME
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not (p.name == LOCK_NAME and p.stat().st_size == 0)}


# ------------------------------------------------------------------ child side

def cli_child(argv: list, precheck: dict) -> dict:
    """Worker body: the precheck (is the input valid?), then `edge <argv>` when it is not.
    Returns {"valid": bool, "code": exit code, "stderr": the Python-level stderr lines}."""
    if _valid(**precheck):
        return {"valid": True, "code": None, "stderr": ""}
    from edge.cli import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:   # argparse exits this way
            code = e.code
    return {"valid": False, "code": code, "stderr": err.getvalue()}


def _valid(kind: str, path: str, **kw) -> bool:
    try:
        _VALIDATORS[kind](path, **kw)
    except Exception:  # noqa: BLE001 - a refusal, clean or not: the command shows which
        return False
    return True


def _valid_model(path, trust=False):
    from export.keras_bridge import load_any
    from export.lint import lint_model
    model, _ = load_any(path, trust_code=trust)
    if lint_model(model).refused:
        raise ValueError("refused by lint")


def _valid_data(path, input_shape):
    from export.data import load_data
    load_data(path, input_shape)


def _valid_config(path):
    from edge.budgets import budgets_from_config
    from edge.config import load_config
    budgets_from_config(load_config(path))


_VALIDATORS = {"model": _valid_model, "data": _valid_data, "config": _valid_config}


def make_sources(victim: str, out: str) -> dict:
    """Worker body: a .keras and a SavedModel of the victim's source model, beside its .h5."""
    from export.keras_bridge import load_any
    model, _ = load_any(Path(victim) / "source_tfkeras.h5")
    out = Path(out)
    model.save(out / "model_savedmodel", save_format="tf")
    model.save(out / "model.keras")   # tf-keras's zip format: config.json + weights
    shutil.copy2(Path(victim) / "source_tfkeras.h5", out / "model.h5")
    return {"input_shape": [int(d) for d in model.inputs[0].shape[1:]]}


# ------------------------------------------------------------------ the campaign

def _mutated(rng, kind: str, src: Path, work: Path, k: int) -> Path:
    """One mutated copy of src (a file, or a SavedModel folder with one mutated file)."""
    from edge.fuzz import mutate
    if src.is_dir():
        dst = work / f"{kind}{k}_{src.name}"
        shutil.copytree(src, dst)
        files = sorted(p for p in dst.rglob("*") if p.is_file())
        victim_file = files[rng.randrange(len(files))]
        victim_file.write_bytes(mutate(rng, victim_file.read_bytes())[1])
        return dst
    dst = work / f"{kind}{k}{src.suffix}"
    dst.write_bytes(mutate(rng, src.read_bytes())[1])
    return dst


def _argv(kind, bad: Path, good: dict, art: Path) -> list:
    export = ["export", "--artifacts-dir", str(art), "--name", VICTIM]
    return {"model": export + ["--model", str(bad), "--data", good["data"]],
            "data": export + ["--model", good["model"], "--data", str(bad)],
            "config": ["--config", str(bad), "export", "--artifacts-dir", str(art)]}[kind]


def _precheck(kind, bad: Path, good: dict) -> dict:
    extra = {"data": {"input_shape": good["input_shape"]}}.get(kind, {})
    return {"kind": kind, "path": str(bad), **extra}


def _outcome(r, before: dict, victim: Path) -> str:
    if not r.ok:
        return "crash" if r.status == "crashed" else "hang"
    v = r.value
    if v["valid"]:
        return "valid"
    lines = [ln for ln in v["stderr"].splitlines() if ln.strip()]
    if snapshot(victim) != before:
        return "changed_existing_files"
    if v["code"] != 2:
        return f"exit_{v['code']}"
    return "one_line_exit_2" if len(lines) == 1 else "several_lines_exit_2"


def find_source(artifacts: Path) -> Path:
    """The first exported model folder (its source_tfkeras.h5 is the good model)."""
    source = next((p.parent for p in sorted(Path(artifacts).glob("*/source_tfkeras.h5"))
                   if (p.parent / "manifest.json").is_file()), None)
    if source is None:
        raise SystemExit(f"{artifacts}: no exported model (run `make export` first)")
    return source


def run(source: Path, n: int, seed: int, progress=print, kinds=None, keep: Path | None = None,
        timeout: float = CALL_TIMEOUT) -> dict:
    """Mutated inputs of each kind until n of them are bad (at most 3n tries); models spread
    over .h5, .keras and SavedModel, data over .npz and .csv. source: an exported model's folder
    (source_tfkeras.h5, data.npz), copied as the existing export beside which all is tried.
    keep: a folder for the inputs that were not refused cleanly (to reproduce them)."""
    from groundfloor.isolate import Worker
    counts: dict = {}
    worker = Worker()
    try:
        with tempfile.TemporaryDirectory(prefix="edge-fuzz-cli-") as tmp:
            tmp = Path(tmp)
            victim = tmp / "artifacts" / VICTIM
            shutil.copytree(source, victim)
            good, sources = _prepare(worker, victim, tmp)
            rng = random.Random(f"{seed}:cli")
            for kind, srcs in sources.items():
                if kinds is None or kind in kinds:
                    ctx = {"good": good, "victim": victim, "work": tmp / "work", "keep": keep, "timeout": timeout}
                    counts[kind] = _one_kind(worker, rng, kind, srcs, n, ctx, progress)
    finally:
        worker.close()
    return counts


def _prepare(worker, victim: Path, tmp: Path):
    from edge.config import DEFAULT_CONFIG
    made = worker.run("edge.fuzz_cli:make_sources", {"victim": str(victim), "out": str(tmp)}, 600)
    if not made.ok:
        raise RuntimeError(f"preparing the source models failed: {made.error}")
    _good_data(victim / "data.npz", tmp)
    (tmp / "work").mkdir()
    good = {"model": str(tmp / "model.h5"), "data": str(tmp / "good.npz"),
            "input_shape": made.value["input_shape"]}
    sources = {"model": [tmp / "model.h5", tmp / "model.keras", tmp / "model_savedmodel"],
               "data": [tmp / "good.npz", tmp / "good.csv"], "config": [DEFAULT_CONFIG]}
    return good, sources


def _one_kind(worker, rng, kind, srcs, n, ctx, progress) -> dict:
    good, victim = ctx["good"], ctx["victim"]
    per: dict = {}
    before = snapshot(victim)
    bad_count, k = 0, 0
    while bad_count < n and k < 3 * n:
        bad = _mutated(rng, kind, srcs[k % len(srcs)], ctx["work"], k)
        r = worker.run("edge.fuzz_cli:cli_child", {"argv": _argv(kind, bad, good, victim.parent),
                                                   "precheck": _precheck(kind, bad, good)}, ctx["timeout"])
        outcome = _outcome(r, before, victim)
        per[outcome] = per.get(outcome, 0) + 1
        bad_count += outcome != "valid"
        if outcome not in ("valid", "one_line_exit_2"):
            per.setdefault("examples", {}).setdefault(outcome, [bad.name, r.error or r.value])
            before = snapshot(victim)   # judge the next input on its own
            if ctx["keep"]:
                Path(ctx["keep"]).mkdir(parents=True, exist_ok=True)
                (shutil.copytree if bad.is_dir() else shutil.copy2)(bad, Path(ctx["keep"]) / f"{outcome}_{bad.name}")
        shutil.rmtree(bad, ignore_errors=True) if bad.is_dir() else bad.unlink(missing_ok=True)
        k += 1
        if bad_count % 50 == 0 and outcome != "valid" or bad_count == n:
            progress(f"  {kind}: {bad_count}/{n} bad inputs through `edge export` ({k} tried): "
                     + ", ".join(f"{o} {c}" for o, c in sorted(per.items()) if o != "examples"))
    return per


def _good_data(victim_npz: Path, out: Path):
    """The victim's own windows as a user's .npz (x, y) and as a .csv of one series."""
    z = np.load(victim_npz)
    x, y = z["x_eval"], z["y_eval"] if "y_eval" in z.files else z["y_float"]
    np.savez(out / "good.npz", x=x, y=y)
    series = x[:, -1, :]
    cols = [f"f{i}" for i in range(series.shape[1])]
    target = np.asarray(y, np.float64).reshape(len(y), -1)[:, 0]
    rows = "".join(",".join(f"{v:.6g}" for v in (*s, t)) + "\n" for s, t in zip(series, target))
    (out / "good.csv").write_text(",".join(cols + ["y"]) + "\n" + rows)


def bad_inputs_ok(counts: dict) -> bool:
    """Every input that was not valid ended in one line and exit 2, with the export untouched."""
    return all(o in ("valid", "one_line_exit_2", "examples") for per in counts.values() for o in per)
