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


def _add_report(stages):
    p = stages.add_parser(
        "report", help="tables (CSV, Markdown) and graphs (PNG) from result files"
    )
    p.add_argument("--runs", nargs="*", default=[], metavar="DIR", help="training run folders")
    p.add_argument("--scores", nargs="*", default=[], metavar="JSON", help="score results")
    p.add_argument("--bench-train", nargs="*", default=[], metavar="JSON")
    p.add_argument("--bench-infer", nargs="*", default=[], metavar="JSON")
    p.add_argument("--reference", required=True, metavar="DIR", help="folder of the reference CSVs")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report")

    def run(args):
        from resnet_recipe.report import ReportOutputs, build_report, reference_files

        build_report(
            args.runs,
            args.scores,
            args.bench_train,
            args.bench_infer,
            **reference_files(args.reference),
            outputs=ReportOutputs.in_folder(args.out),
        )
        return 0

    p.set_defaults(run=run)


def _stage_parsers():
    return [_add_report]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
