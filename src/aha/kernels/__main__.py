"""`python -m aha.kernels [--require]`: build aha's CPU kernels now (instead of at the first rollout)
and say whether they are in use. Exit status 1 only with --require and no kernel."""

import sys

from aha import kernels

ops = kernels.decode_ops()
if ops is not None:
    print("aha: fused CPU decode kernel ready")
sys.exit(1 if ops is None and "--require" in sys.argv[1:] else 0)
