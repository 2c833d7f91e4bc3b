"""Command line: every workflow stage without Snakemake (`resnet-recipe <stage> --help`)."""

import argparse
import os
import sys

import yaml

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


def _add_demo_data(stages):
    p = stages.add_parser(
        "demo-data", help="write the digits demo tree (ROOT/train, ROOT/val) from scikit-learn"
    )
    p.add_argument("root", help="folder to write train/ and val/ into")
    p.add_argument("--seed", type=int, default=0)

    def run(args):
        from resnet_recipe.demo_data import write_demo_tree

        write_demo_tree(args.root, seed=args.seed)
        return 0

    p.set_defaults(run=run)


def _add_make_list(stages):
    p = stages.add_parser("make-list", help="im2rec list (.lst) of a raw split folder")
    p.add_argument("split_dir", help="raw split folder: class folders, or flat with --val-labels")
    p.add_argument("lst", help="list file to write")
    p.add_argument("--classes", required=True, help="classes.tsv (label<TAB>synset[<TAB>name])")
    p.add_argument(
        "--write-classes",
        action="store_true",
        help="first write --classes from the class folders of split_dir (the train split)",
    )
    p.add_argument("--class-names", help="synset names file (LOC_synset_mapping.txt) for classes")
    p.add_argument("--shuffle-seed", type=int, help="shuffle with this seed (train); else sorted")
    p.add_argument(
        "--val-labels", help="label CSV of a flat folder: LOC_val_solution.csv or filename,synset"
    )

    def run(args):
        from resnet_recipe.listing import make_list, write_classes

        if args.write_classes:
            write_classes(args.split_dir, args.classes, args.class_names)
        make_list(args.split_dir, args.classes, args.lst, args.shuffle_seed, args.val_labels)
        return 0

    p.set_defaults(run=run)


def _add_pack(stages):
    p = stages.add_parser("pack", help="pack a list's images into pass-through RecordIO")
    p.add_argument("lst", help="im2rec list (index<TAB>label<TAB>path)")
    p.add_argument("root", help="folder the list's paths are relative to")
    p.add_argument("rec", help="record file to write; the .idx and .rejected.tsv go beside it")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--max-rejected-fraction", type=float, default=0.001)
    p.add_argument(
        "--full-decode", action="store_true", help="also decode every JPEG in full (slower)"
    )

    def run(args):
        from resnet_recipe.records import pack_records

        stem = args.rec.removesuffix(".rec")
        pack_records(
            args.lst,
            args.root,
            args.rec,
            f"{stem}.idx",
            f"{stem}.rejected.tsv",
            threads=args.threads,
            max_rejected_fraction=args.max_rejected_fraction,
            full_decode=args.full_decode,
        )
        return 0

    p.set_defaults(run=run)


def _parse_value(text):
    """A command-line value as YAML reads it: 0.1 -> float, dynamic -> str, ..."""
    return yaml.safe_load(text)


def _add_settings(parser, title, defaults):
    """One --option per settings key (underscores become dashes), defaulting to `defaults`."""
    group = parser.add_argument_group(title)
    for key, default in defaults.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(default, bool):
            group.add_argument(flag, default=default, action=argparse.BooleanOptionalAction)
        elif isinstance(default, list):
            group.add_argument(flag, default=default, nargs="+", type=_parse_value)
        else:
            group.add_argument(flag, default=default, type=_parse_value, help=f"default: {default}")


def _settings(args, defaults):
    return {key: getattr(args, key) for key in defaults}


def _add_train(stages):
    from resnet_recipe import network, pipelines, training

    p = stages.add_parser(
        "train",
        help="train one run (the original recipe unless options change it)",
        description="Data-parallel training over --gpus GPUs (0: the CPU); resumes from the "
        "newest checkpoint in --state-dir made with the same settings.",
    )
    p.add_argument("--train-rec", required=True, help="training .rec (its .idx beside it)")
    p.add_argument("--val-rec", required=True, help="validation .rec (its .idx beside it)")
    p.add_argument("--classes", required=True, help="classes.tsv of the packed data")
    p.add_argument("--out", required=True, help="folder for the model, metrics and report")
    p.add_argument("--state-dir", help="resumable per-epoch state (default: OUT.state)")
    p.add_argument("--lock-dir", default="/tmp/resnet-recipe-gpu-locks", help="GPU lock files")
    _add_settings(p, "training", training.DEFAULT_SETTINGS)
    _add_settings(p, "network", network.DEFAULT_SETTINGS)
    _add_settings(p, "input pipeline", pipelines.DEFAULT_SETTINGS)

    def run(args):
        training.train(
            train_rec=args.train_rec,
            train_idx=_index_of(args.train_rec),
            val_rec=args.val_rec,
            val_idx=_index_of(args.val_rec),
            classes_tsv=args.classes,
            out_dir=args.out,
            state_root=args.state_dir or args.out.rstrip("/") + ".state",
            settings=_settings(args, training.DEFAULT_SETTINGS),
            network_settings=_settings(args, network.DEFAULT_SETTINGS),
            pipeline_settings=_settings(args, pipelines.DEFAULT_SETTINGS),
            lock_dir=args.lock_dir,
            run=os.path.basename(args.out.rstrip("/")),
        )
        return 0

    p.set_defaults(run=run)


def _index_of(rec):
    return os.path.splitext(rec)[0] + ".idx"


def _stage_parsers():
    return [_add_demo_data, _add_make_list, _add_pack, _add_train, _add_report]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
