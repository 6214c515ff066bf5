"""Evaluation commands on WFDB database folders with reference annotations.

    python -m inference.evaluate qrs    --data DIR [--records ...] [--json OUT]
    python -m inference.evaluate beats  --data DIR [--records ...|ds1|ds2] [--json OUT]
    python -m inference.evaluate rhythm --data DIR [--records ...] [--json OUT]

Each subcommand lives in its own module under ``inference/evaluation/`` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``; this module only dispatches, so adding an
evaluation is one module and one name below. Every command shows a progress bar, prints a
markdown table and, with ``--json OUT``, writes the JSON, the table (``OUT`` with ``.md``) and
its pictures beside it.
"""

import argparse
import importlib
import sys

# Subcommand name -> module in inference.evaluation.
SUBCOMMANDS = ("qrs", "beats", "rhythm")


def _available() -> dict:
    modules = {}
    for name in SUBCOMMANDS:
        try:
            modules[name] = importlib.import_module(f"inference.evaluation.{name}")
        except ModuleNotFoundError as error:
            # only a missing evaluation module is tolerated, never a missing dependency of one
            if error.name != f"inference.evaluation.{name}":
                raise
    return modules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.evaluate", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="what", required=True)
    modules = _available()
    for module in modules.values():
        module.add_parser(sub)
    args = parser.parse_args(argv)
    return modules[args.what].run(args)


if __name__ == "__main__":
    sys.exit(main())
