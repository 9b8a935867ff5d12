"""A bounded, seeded fuzz campaign over what users hand the toolkit: mutated model files through
the on-device API (`edge.runtime.load`, then `predict` or `stream().push`), and mutated model
files, data files and configs through `edge export` itself (edge/fuzz_cli.py).

    python -m edge.fuzz --artifacts artifacts --models 2000 --seed 0      (or `make fuzz`)

Every mutated model is tried twice: beside a copy of its manifest (so the recorded sha256 must
refuse it) and alone (so the verifier and the crash probe must). The campaign itself runs in
child processes, a chunk at a time, so a crash of "the calling process" is counted, not fatal:
the goal is 0 crashes, 0 hangs, and every hash-known corruption refused.
"""
from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge import fuzz_cli, toolmain

EXTREME_WORDS = (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80",
                 b"\x01\x00\x00\x00")


def _truncate(rng, data):
    return data[:rng.randrange(0, max(1, len(data)))]


def _flip_bits(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _replace_run(rng, data, shortest, longest, fill):
    """A run of shortest..longest bytes at a random place replaced by fill(rng, n) (cut at the end)."""
    b = bytearray(data)
    i = rng.randrange(len(b))
    n = rng.randint(shortest, longest)
    b[i:i + n] = fill(rng, min(n, len(b) - i))
    return bytes(b)


def _overwrite_run(rng, data):
    return _replace_run(rng, data, 1, 64, lambda rng, n: bytes(rng.randrange(256) for _ in range(n)))


def _header(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(min(32, len(b)))] = rng.randrange(256)
    return bytes(b)


def _extreme_word(rng, data):
    b = bytearray(data)
    i = rng.randrange(0, max(1, len(b) - 4)) & ~3
    b[i:i + 4] = rng.choice(EXTREME_WORDS)
    return bytes(b)


def _zero_region(rng, data):
    return _replace_run(rng, data, 4, 512, lambda rng, n: bytes(n))


MUTATORS = {"truncate": _truncate, "flip_bits": _flip_bits, "overwrite_run": _overwrite_run,
            "header": _header, "extreme_word": _extreme_word, "zero_region": _zero_region}


def mutate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    name = rng.choice(sorted(MUTATORS))
    out = MUTATORS[name](rng, data)
    return name, out if out != data else _flip_bits(rng, data)


# ------------------------------------------------------------------ model files (child side)

def _try_model(path: Path, x) -> str:
    """One mutated file through the public API: the outcome's name."""
    from edge import runtime
    try:
        model = runtime.load(path)
    except runtime.ModelRejected as e:
        text = str(e)
        return ("refused_hash" if "sha256" in text else
                "refused_probe" if "runtime crashed" in text or "runtime timed out" in text else "refused")
    except (ValueError, RuntimeError, OSError) as e:
        return f"raised_on_load:{type(e).__name__}: {' '.join(str(e).split())[:160]}"
    try:
        if model.streaming:
            s = model.stream()
            for sample in x[0][:4]:
                s.push(sample[: model.features] if sample.shape[0] >= model.features
                       else np.resize(sample, model.features))
        else:
            w = np.resize(x[:1], (1, model.steps, model.features)).astype(np.float32)
            model.predict(w)
    except (ValueError, RuntimeError) as e:
        return f"raised_on_run:{type(e).__name__}"
    return "ran"


def model_chunk(sources: list, seed: int, start: int, count: int, work: str, progress: str,
                keep: str | None = None) -> dict:
    """Child body: mutations start..start+count of the sources, each tried with and without its
    manifest; the file under test is written to `progress` first (a crash names it)."""
    rng = random.Random(f"{seed}:{start}")
    counts: dict = {}
    work = Path(work)
    for k in range(start, start + count):
        src = Path(sources[k % len(sources)])
        name, data = mutate(rng, src.read_bytes())
        x = np.load(src.parent / "data.npz")["x_eval"][:2]
        for with_manifest in (True, False):
            folder = work / f"m{k}_{int(with_manifest)}"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / src.name
            target.write_bytes(data)
            if with_manifest:
                shutil.copy(src.parent / "manifest.json", folder / "manifest.json")
            Path(progress).write_text(json.dumps({"file": str(target), "source": str(src), "mutation": name}))
            outcome = _try_model(target, x)
            if outcome == "refused_probe" and keep:   # a file that would have crashed the caller
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(target, Path(keep) / f"probe_{k}_{target.name}")
            key = ("hash_known:" if with_manifest else "no_hash:") + outcome.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
            if ":" in outcome:
                counts.setdefault("examples", {}).setdefault(outcome.split(":")[0], outcome)
            shutil.rmtree(folder, ignore_errors=True)
    return counts


def run_models(artifacts: Path, n: int, seed: int, chunk: int = 200, timeout: float = 900.0,
               keep_crashers: Path | None = None, progress=print) -> dict:
    from groundfloor.isolate import run_isolated
    sources = sorted(str(p) for p in artifacts.glob("*/*.tflite")) + sorted(str(p) for p in artifacts.glob("*/*.onnx"))
    sources = [s for s in sources if (Path(s).parent / "manifest.json").is_file()]
    if not sources:
        raise SystemExit(f"{artifacts}: no exported .tflite/.onnx artifacts (run `make export` first)")
    totals: dict = {"crashes": 0, "hangs": 0, "escaped_errors": 0, "crashers": []}
    with tempfile.TemporaryDirectory(prefix="edge-fuzz-") as tmp:
        for start in range(0, n, chunk):
            count = min(chunk, n - start)
            prog = Path(tmp) / "progress.json"
            r = run_isolated("edge.fuzz:model_chunk", {"sources": sources, "seed": seed, "start": start,
                                                       "count": count, "work": tmp, "progress": str(prog),
                                                       "keep": str(keep_crashers) if keep_crashers else None},
                             timeout=timeout)
            if r.ok:
                for key, v in r.value.items():
                    if key == "examples":
                        totals.setdefault("examples", {}).update(v)
                    else:
                        totals[key] = totals.get(key, 0) + v
            else:
                what = json.loads(prog.read_text()) if prog.exists() else {}
                # an exception the API let escape ends the chunk as surely as a crash
                totals[{"crashed": "crashes", "timeout": "hangs"}.get(r.status, "escaped_errors")] += 1
                totals["crashers"].append({**what, "status": r.status, "error": r.error, "chunk": start})
                if keep_crashers and what.get("file") and Path(what["file"]).exists():
                    keep_crashers.mkdir(parents=True, exist_ok=True)
                    shutil.copy(what["file"], keep_crashers / f"crash_{start}_{Path(what['file']).name}")
            progress(f"  models: {min(start + count, n)}/{n} mutated files ({2 * min(start + count, n)} loads), "
                     f"crashes {totals['crashes']}, hangs {totals['hangs']}")
    return totals


def fuzz_campaign(artifacts: Path, models: int, bad_inputs: int, seed: int, keep_crashers: Path | None,
                  out: Path) -> int:
    """Both campaigns (model files through the API, bad inputs through `edge export`), the report
    written to out; 0 if nothing crashed, hung, escaped or went unrefused."""
    t0 = time.perf_counter()
    print(f"fuzz: seed {seed}")
    result = {"seed": seed, "models": run_models(artifacts, models, seed, keep_crashers=keep_crashers),
              "edge_export": fuzz_cli.run(fuzz_cli.find_source(artifacts), bad_inputs, seed, keep=keep_crashers)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=1, default=str))
    m = result["models"]
    hash_escaped = sum(v for k, v in m.items() if k.startswith("hash_known:") and not k.startswith("hash_known:refused"))
    cli_ok = fuzz_cli.bad_inputs_ok(result["edge_export"])
    ok = m["crashes"] == 0 and m["hangs"] == 0 and m["escaped_errors"] == 0 and cli_ok and hash_escaped == 0
    cli = "all one line, exit 2, existing export untouched" if cli_ok else "NOT all refused cleanly"
    return toolmain.verdict(out, result, ok, f" (crashes {m['crashes']}, hangs {m['hangs']}, exceptions escaping "
                            f"the API {m['escaped_errors']}, hash-known corruptions not refused {hash_escaped}, "
                            f"bad inputs to `edge export` {cli})")


def main(argv=None) -> int:
    p = toolmain.parser("fuzz", __doc__, artifacts=True, out="reports/fuzz.json")
    p.add_argument("--models", type=int, default=2000, help="mutated model files (each loaded twice)")
    p.add_argument("--bad-inputs", type=int, default=200,
                   help="bad model files, data files and configs (each) through `edge export`")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-crashers", type=Path, default=None, help="copy files that crashed here")
    return toolmain.run(p, argv, fuzz_campaign)


if __name__ == "__main__":
    sys.exit(main())
