from groundfloor.isolate import run_isolated


def test_value_comes_back_with_peak_rss():
    r = run_isolated("os:getcwd")
    assert r.ok and isinstance(r.value, str) and r.peak_rss_bytes > 1_000_000


def test_crash_is_a_result_not_a_dead_parent():
    r = run_isolated("os:abort")
    assert not r.ok and r.status == "crashed" and "SIGABRT" in r.error


def test_exception_is_one_line():
    r = run_isolated("json:loads", {"s": "{"})
    assert r.status == "error" and r.error.startswith("JSONDecodeError") and "\n" not in r.error


def test_hang_is_killed_at_the_timeout():
    r = run_isolated("subprocess:call", {"args": ["sleep", "30"]}, timeout=1.0)
    assert r.status == "timeout" and "timed out" in r.error and r.seconds < 10
