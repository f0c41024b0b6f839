"""tradewire's load benchmarks: `scripts/bench.sh` (bench/run.py) drives real processes over loopback."""
