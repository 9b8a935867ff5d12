"""The simulated constrained runtime: device profiles, runners, the bench, latency and memory figures.

runners/ holds one module per runtime; the bench keeps its latency calibration and stream checks
in their own modules; mcu/ is the emulated microcontroller (generated integer C in QEMU)."""
