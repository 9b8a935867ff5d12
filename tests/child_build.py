"""Test models built once in a child Python process (TensorFlow stays out of the pytest
process) and kept in pytest's cache directory, keyed by the build code, its parameters and the
tool versions, so reruns take no conversion time."""
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import tiny_keras

# one thread, no GPU: the child converts the same way on every machine
CHILD_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
             "TF_NUM_INTEROP_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def built_in_child(request, label: str, build, params, files: list[str],
                   dists=("tensorflow-cpu", "tf-keras")) -> Path:
    """The cache folder `<label>_<key>` holding files. When one is missing, build's module is run
    as a script on a fresh folder (`python <module> <folder>`: its __main__ calls
    build(Path(folder))) and the files are copied over, so a killed build leaves no half folder."""
    source = inspect.getsource(build) + inspect.getsource(tiny_keras) + repr((params, files))
    versions = json.dumps([metadata.version(d) for d in dists])
    key = hashlib.sha256((source + versions).encode()).hexdigest()[:16]
    cache = Path(request.config.cache.mkdir(f"{label}_{key}"))
    return filled_cache(cache, files, [sys.executable, inspect.getsourcefile(build)], label)


def filled_cache(cache: Path, files: list[str], argv: list[str], label: str) -> Path:
    """cache once it holds files: when one is missing, `argv <fresh folder>` builds them there and
    the folder's files are copied over. Under the folder's lock, so test workers running in parallel build
    once and the others wait for it."""
    from groundfloor.locks import folder_lock
    with folder_lock(cache, f"building the {label} test models", wait_message=lambda m: None):
        if all((cache / f).is_file() for f in files):
            return cache
        tmp = cache.with_name(cache.name + ".building")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        proc = subprocess.run([*argv, str(tmp)], env=dict(os.environ, **CHILD_ENV),
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"building the {label} test models failed:\n{proc.stderr[-3000:]}")
        for f in sorted(tmp.iterdir(), key=lambda p: p.name in files):   # the files asked for last:
            if f.is_file():                                                 # they mean "complete"
                shutil.copy2(f, cache / f.name)
        shutil.rmtree(tmp, ignore_errors=True)
    return cache
