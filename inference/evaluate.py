"""Evaluation commands on WFDB database folders with reference annotations.

    python -m inference.evaluate qrs    --data DIR [--records ...] [--json OUT]
    python -m inference.evaluate beats  --data DIR [--records ...|ds1|ds2] [--json OUT]
    python -m inference.evaluate rhythm --data DIR [--records ...] [--json OUT]

Each subcommand lives in its own module under ``inference/evaluation/`` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``; this module only dispatches. Every
command shows a progress bar, prints a markdown table and, with ``--json OUT``, writes the
JSON, the table (``OUT`` with ``.md``) and its pictures beside it.
"""

import argparse
import sys

from inference.evaluation import beats, qrs, rhythm

SUBCOMMANDS = {"qrs": qrs, "beats": beats, "rhythm": rhythm}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.evaluate", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="what", required=True)
    for module in SUBCOMMANDS.values():
        module.add_parser(sub)
    args = parser.parse_args(argv)
    return SUBCOMMANDS[args.what].run(args)


if __name__ == "__main__":
    sys.exit(main())
