"""``python -m cnnimg_hub ...``: see cnnimg_hub/cli.py."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
