"""``python -m cnnimg_hub ...``: see cnnimg_hub/cli.py."""
import os
import sys

from .cli import main

if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # one of several torchrun processes, its group already left (cli.main): end without the interpreter's
        # teardown, where C++ destructors of the gloo objects can abort a finished rank (see training/common.leave)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
