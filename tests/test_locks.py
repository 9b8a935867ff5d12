"""One run at a time per artifacts folder; a killed run's lock and temporary files vanish."""
import os
import signal
import subprocess
import sys
import time

from groundfloor.locks import LOCK_NAME, folder_lock, stale_temps

HOLD = """
import sys, time
from groundfloor.locks import folder_lock
with folder_lock(sys.argv[1], "holder"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(folder, seconds):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_second_run_waits_for_the_first_and_says_so(tmp_path):
    p = _holder(tmp_path, 1.5)
    said, t0 = [], time.perf_counter()
    with folder_lock(tmp_path, "second", wait_message=said.append):
        waited = time.perf_counter() - t0
    p.wait()
    assert waited > 0.5 and len(said) == 1 and "holder (pid" in said[0] and "waiting" in said[0]


def test_kill_9_releases_the_lock_and_stale_temps_are_cleared(tmp_path):
    (tmp_path / ".model_float32.k3j2h1.tflite").write_bytes(b"half")
    (tmp_path / ".manifest.json.x8y7.tmp").write_text("{")
    (tmp_path / "model_float32.tflite").write_bytes(b"done")
    assert len(stale_temps(tmp_path)) == 2
    p = _holder(tmp_path, 60)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    t0 = time.perf_counter()
    with folder_lock(tmp_path, "after", wait_message=lambda m: None):
        assert time.perf_counter() - t0 < 5
        assert stale_temps(tmp_path) == [] and (tmp_path / "model_float32.tflite").read_bytes() == b"done"
    assert (tmp_path / LOCK_NAME).exists()


def test_a_missing_folder_is_not_created_when_asked_not_to(tmp_path):
    with folder_lock(tmp_path / "nope", "bench", create=False) as lock:
        assert lock is None
    assert not (tmp_path / "nope").exists()
