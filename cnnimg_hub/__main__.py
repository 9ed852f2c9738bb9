"""``python -m cnnimg_hub ...``: see cnnimg_hub/cli.py."""
import os
import sys

from .cli import main
from .runtime import end_rank

if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        end_rank(code)  # one of several torchrun processes; cli.main has left its group with the others
    sys.exit(code)
