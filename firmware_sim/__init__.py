"""The simulated constrained runtime: device profiles, isolated runners, measurement."""
