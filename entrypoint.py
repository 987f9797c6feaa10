"""What the container runs: ``analyzer run`` with every setting from the Batch job's environment."""

import sys

from analyzer.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
