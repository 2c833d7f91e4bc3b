"""Command line: every workflow stage without Snakemake (`resnet-recipe <stage> --help`)."""

import argparse
import sys

from resnet_recipe.progress import setup_logging


def build_parser():
    parser = argparse.ArgumentParser(
        prog="resnet-recipe",
        description="ResNet-50 v1.5 on MXNet and DALI: packing, training, scoring, benchmarks.",
    )
    parser.add_argument("--log", help="write the log to this file instead of stderr")
    stages = parser.add_subparsers(dest="stage", required=True)
    # Each stage's module adds its own sub-command.
    for add in _stage_parsers():
        add(stages)
    return parser


def _stage_parsers():
    return []


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
