"""`edge sweep`: train a grid of recurrent variants, run each through export, quantize and bench on Ray,
and pick per device the Pareto front and the smallest variant within budget.

    space.py    the search-space TOML: parsed, validated, expanded into variants
    variant.py  one variant: its keys, its training task, the real step (train, export, quantize, bench)
    fake.py     simulated steps (no TensorFlow) for the tests and the orchestration benchmark
    execute.py  Ray execution: one task per variant, retry once, progress, artifacts shipped back
    pareto.py   per-device points, Pareto fronts, the recommendation (or the nearest miss)
    report.py   sweep.json, report.md / report.html with the Pareto plots, check.toml for `edge check`
    cli.py      the `edge sweep` subcommand
"""
