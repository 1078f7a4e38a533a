"""``python -m sb3_gaara.study``: see :mod:`sb3_gaara.study`."""

import sys

from sb3_gaara.study.cli import main

if __name__ == "__main__":
    sys.exit(main())
