"""`python -m egoclean`: the whole job (see egoclean/run.py); `bash run.sh` calls it."""

import sys

try:
    from egoclean.run import main  # torch, matplotlib, PyAV: seconds of imports a Ctrl-C may cut short
except KeyboardInterrupt:
    print("interrupted before anything started; nothing was written", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
