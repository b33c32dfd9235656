"""`python -m egoclean`: the whole job (see egoclean/run.py); `bash run.sh` calls it."""

import sys

from egoclean.run import main

sys.exit(main())
