"""Command line: every workflow stage without Snakemake (`resnet-recipe <stage> --help`).

Building the parser imports no MXNet or DALI: each sub-command imports the modules it runs
only when it runs, so `--help` and the data commands start at once.
"""

import argparse
import dataclasses
import logging
import os
import sys
import typing

# MXNet sizes its CPU thread pool to half the cores unless told; a stage run from the
# command line gets all of them, as under Snakemake, which sets this to the job's threads.
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))

from resnet_recipe.files.user_errors import DEBUG_VARIABLE, one_line_errors
from resnet_recipe.workflow_support import preflight
from resnet_recipe.workflow_support import settings as sections
from resnet_recipe.workflow_support.progress import setup_logging

LOCK_DIR = "/tmp/resnet-recipe-gpu-locks"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="resnet-recipe",
        description="ResNet-50 v1.5 on MXNet and DALI: packing, training, scoring, benchmarks.",
    )
    parser.add_argument("--log", help="write the log to this file instead of stderr")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of an error a user can fix too (as {DEBUG_VARIABLE}=1); "
        "without it such an error is one line and exit status 2",
    )
    stages = parser.add_subparsers(dest="stage", required=True)
    for add in STAGE_PARSERS:
        add(stages)
    return parser


def _add_target_option(parser):
    parser.add_argument(
        "--target-top1",
        type=float,
        default=sections.Report().target_top1,
        metavar="PERCENT",
        help="validation top-1 to time each run to (default: %(default)s, MLPerf's ResNet-50"
        " target; report.target_top1 of the config)",
    )


def _add_report(stages):
    p = stages.add_parser(
        "report", help="tables (CSV, Markdown) and graphs (PNG) from result files"
    )
    p.add_argument("--runs", nargs="*", default=[], metavar="DIR", help="training run folders")
    p.add_argument("--scores", nargs="*", default=[], metavar="JSON", help="score results")
    p.add_argument("--bench-train", nargs="*", default=[], metavar="JSON")
    p.add_argument("--bench-infer", nargs="*", default=[], metavar="JSON")
    p.add_argument("--onnx-parity", nargs="*", default=[], metavar="JSON", help="ONNX parity")
    p.add_argument(
        "--bench-infer-onnx", nargs="*", default=[], metavar="JSON", help="onnxruntime points"
    )
    p.add_argument("--reference", required=True, metavar="DIR", help="folder of the reference CSVs")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    _add_target_option(p)

    def run(args):
        from resnet_recipe.report.build import ReportOutputs, build_report
        from resnet_recipe.report.inputs import reference_files

        build_report(
            args.runs,
            args.scores,
            args.bench_train,
            args.bench_infer,
            **reference_files(args.reference),
            outputs=ReportOutputs.in_folder(args.out),
            onnx_parity_files=args.onnx_parity,
            bench_infer_onnx_files=args.bench_infer_onnx,
            target_top1=args.target_top1,
        )
        return 0

    p.set_defaults(run=run)


def _add_compare(stages):
    p = stages.add_parser(
        "compare",
        help="two runs (train/<run> folders) or two results folders side by side",
        description="Metrics, the settings that differ and the provenance that differs "
        "(code, versions, MXNet build, machine) of two runs, or of each run and benchmark "
        "point two results folders both have. For two runs also each one's family of "
        "replicas (the runs beside it that differ only in seed): the spread of top-1, "
        "top-5 and training time over the seeds, the time to a target top-1, and whether "
        "the two families' top-1 differ by more than their seed spread explains (Welch's "
        "t-test; no judgement with one seed on a side).",
    )
    p.add_argument(
        "a",
        help="a train/<run> folder (train/NAME for the replicas train/NAME.seedN) or a results"
        " folder",
    )
    p.add_argument("b", help="the same kind of folder to set beside it")
    p.add_argument("--json", action="store_true", help="print JSON instead of text tables")
    _add_target_option(p)

    def run(args):
        from resnet_recipe.report.compare import compare, format_json, format_text

        comparison = compare(args.a, args.b, args.target_top1)
        sys.stdout.write((format_json if args.json else format_text)(comparison))
        return 0

    p.set_defaults(run=run)


def _add_demo_data(stages):
    p = stages.add_parser(
        "demo-data", help="write the digits demo tree (ROOT/train, ROOT/val) from scikit-learn"
    )
    p.add_argument("root", help="folder to write train/ and val/ into")
    p.add_argument("--seed", type=int, default=0)

    def run(args):
        from resnet_recipe.data.demo_data import write_demo_tree

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
        from resnet_recipe.data.listing import make_list, write_classes

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
    p.add_argument(
        "--workers",
        type=int,
        default=4,
        help="processes that pack a contiguous part of the list each (one per core)",
    )
    p.add_argument(
        "--max-rejected-fraction",
        type=float,
        help="fail, writing nothing, when more than this fraction of the files is rejected "
        "(default 0.001, as data.max_rejected_fraction)",
    )
    p.add_argument(
        "--full-decode", action="store_true", help="also decode every JPEG in full (slower)"
    )

    def run(args):
        from resnet_recipe.data.records import pack_records

        stem = args.rec.removesuffix(".rec")
        fraction = args.max_rejected_fraction
        pack_records(
            args.lst,
            args.root,
            args.rec,
            f"{stem}.idx",
            f"{stem}.rejected.tsv",
            workers=args.workers,
            full_decode=args.full_decode,
            **({} if fraction is None else {"max_rejected_fraction": fraction}),
        )
        return 0

    p.set_defaults(run=run)


def _option_value(annotation, flag):
    """argparse `type` of a settings field: the text as settings.convert reads it."""

    def parse(text):
        try:
            return sections.convert(text, annotation, flag)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = flag  # argparse names the type in some messages
    return parse


def _add_settings(parser, title, section, leave_out=()):
    """One --option per field of a settings section (underscores become dashes),
    defaulting to the section's default (the original recipe)."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(section)
    defaults = section()
    for item in dataclasses.fields(section):
        if item.name in leave_out:
            continue
        flag = "--" + item.name.replace("_", "-")
        default = getattr(defaults, item.name)
        annotation = hints[item.name]
        # The setting's declared description (argparse reads % as a format).
        about = item.metadata.get("description", "").replace("%", "%%")
        if annotation is bool:
            group.add_argument(
                flag, default=default, action=argparse.BooleanOptionalAction, help=about
            )
        elif typing.get_origin(annotation) is tuple:
            element = _option_value(typing.get_args(annotation)[0], flag)
            group.add_argument(flag, default=default, nargs="+", type=element, help=about)
        else:
            parse = _option_value(annotation, flag)
            group.add_argument(
                flag, default=default, type=parse, help=f"{about} default: {default}"
            )


def _settings(args, section, **values):
    """The settings section of the parsed options (and of `values`, for left-out fields)."""
    names = {item.name for item in dataclasses.fields(section)} - set(values)
    return section.from_config(
        {**{name: getattr(args, name) for name in names}, **values}, "command line"
    )


def _add_train(stages):
    p = stages.add_parser(
        "train",
        help="train one run (the original recipe unless options change it)",
        description="Data-parallel training over --gpus GPUs (0: the CPU); resumes from the "
        "newest checkpoint under --state-root made with the same settings.",
    )
    p.add_argument("--train-rec", required=True, help="training .rec (its .idx beside it)")
    p.add_argument("--val-rec", required=True, help="validation .rec (its .idx beside it)")
    p.add_argument("--classes", required=True, help="classes.tsv of the packed data")
    p.add_argument("--out", required=True, help="folder for the model, metrics and report")
    p.add_argument(
        "--state-root",
        help="folder of the resumable per-epoch state, one sub-folder per settings digest "
        "(default: OUT.state)",
    )
    p.add_argument("--lock-dir", default=LOCK_DIR, help="GPU lock files")
    _add_settings(p, "training", sections.TrainingRun)
    _add_settings(p, "network", sections.Network)
    _add_settings(p, "input pipeline", sections.InputPipeline)
    _add_settings(p, "distributed (--nodes above 1)", sections.Distributed)

    def run(args):
        from resnet_recipe.training.job import TrainingJob
        from resnet_recipe.training.run import train

        job = TrainingJob(
            train_rec=args.train_rec,
            train_idx=_index_of(args.train_rec),
            val_rec=args.val_rec,
            val_idx=_index_of(args.val_rec),
            classes_tsv=args.classes,
            out_dir=args.out,
            state_root=args.state_root or args.out.rstrip("/") + ".state",
            settings=_settings(args, sections.TrainingRun),
            network_settings=_settings(args, sections.Network),
            pipeline_settings=_settings(args, sections.InputPipeline),
            lock_dir=args.lock_dir,
            run=os.path.basename(args.out.rstrip("/")),
            distributed_settings=_settings(args, sections.Distributed),
        )
        train(job)
        return 0

    p.set_defaults(run=run)


def _index_of(rec):
    return os.path.splitext(rec)[0] + ".idx"


def _add_score(stages):
    p = stages.add_parser(
        "score",
        help="loss, top-1, top-5, images/s and latency of a checkpoint on the validation set",
        description="Scores PREFIX-symbol.json + PREFIX-NNNN.params (NNNN = --epoch) on one "
        "device, like the original SCORE scripts.",
    )
    p.add_argument("--prefix", required=True, help="checkpoint prefix, e.g. results/train/R/model")
    p.add_argument("--epoch", required=True, type=int, help="checkpoint epoch (NNNN)")
    p.add_argument("--val-rec", required=True, help="validation .rec (its .idx beside it)")
    p.add_argument("--out", required=True, help="JSON file for the result")
    p.add_argument("--dtype", default="float32", choices=sections.DTYPES)
    p.add_argument("--gpus", type=int, default=0, choices=[0, 1], help="1 GPU or 0 (the CPU)")
    p.add_argument(
        "--batch-size",
        type=int,
        help="default: 128 for float16, 64 for float32 (the original SCORE_FP16/FP32.sh)",
    )
    p.add_argument("--run-name", help="run name in the result (default: the prefix's folder)")
    p.add_argument("--lock-dir", default=LOCK_DIR, help="GPU lock files")
    _add_settings(p, "input pipeline", sections.InputPipeline)

    def run(args):
        from resnet_recipe.scoring.evaluation import score_checkpoint

        score_checkpoint(
            args.out,
            prefix=args.prefix,
            epoch=args.epoch,
            val_rec=args.val_rec,
            val_idx=_index_of(args.val_rec),
            dtype=args.dtype,
            gpus=args.gpus,
            batch_size=args.batch_size or sections.Score().batch_size_of(args.dtype),
            pipeline_settings=_settings(args, sections.InputPipeline),
            lock_dir=args.lock_dir,
            run=args.run_name or os.path.basename(os.path.dirname(os.path.abspath(args.prefix))),
        )
        return 0

    p.set_defaults(run=run)


def _bench_setup(args, rec, val_rec=None):
    from resnet_recipe.benchmarking.throughput import BenchSetup

    return BenchSetup(
        rec=rec,
        idx=_index_of(rec),
        classes_tsv=args.classes,
        network=_settings(args, sections.Network),
        pipeline=_settings(args, sections.InputPipeline),
        lock_dir=args.lock_dir,
        val_rec=val_rec,
        val_idx=val_rec and _index_of(val_rec),
    )


def _add_bench_train(stages):
    p = stages.add_parser(
        "bench-train",
        help="training throughput of one (dtype, gpus, batch) point: unwaited batch ends as "
        "benchmark.py measured it, and epoch wall time",
        description="The training loop runs the original recipe's settings with the point's "
        "GPUs, batch and dtype.",
    )
    p.add_argument("--train-rec", required=True, help="training .rec (its .idx beside it)")
    p.add_argument("--val-rec", required=True, help="validation .rec of the pass after every epoch")
    p.add_argument("--classes", required=True, help="classes.tsv of the packed data")
    p.add_argument("--out", required=True, help="JSON file for the result")
    p.add_argument("--dtype", default="float32", choices=sections.DTYPES)
    p.add_argument("--gpus", type=int, default=1, help="GPUs (0: the CPU)")
    p.add_argument("--batch-per-device", type=int, required=True)
    p.add_argument("--num-examples", type=int, help="images of the notional epoch")
    p.add_argument("--lock-dir", default=LOCK_DIR, help="GPU lock files")
    _add_settings(p, "benchmark", sections.BenchTrain, leave_out=("num_examples",))
    _add_settings(p, "network", sections.Network)
    _add_settings(p, "input pipeline", sections.InputPipeline)

    def run(args):
        from resnet_recipe.benchmarking.throughput import bench_train

        num_examples = args.num_examples or sections.BenchTrain().num_examples[args.dtype]
        bench_train(
            args.out,
            _bench_setup(args, args.train_rec, args.val_rec),
            dtype=args.dtype,
            gpus=args.gpus,
            batch_per_device=args.batch_per_device,
            bench_settings=_settings(
                args, sections.BenchTrain, num_examples={args.dtype: num_examples}
            ),
            run_settings=sections.TrainingRun(),
        )
        return 0

    p.set_defaults(run=run)


def _add_bench_infer(stages):
    p = stages.add_parser(
        "bench-infer", help="inference throughput and latency of one (dtype, batch) point"
    )
    p.add_argument("--val-rec", required=True, help="validation .rec (its .idx beside it)")
    p.add_argument("--classes", required=True, help="classes.tsv of the packed data")
    p.add_argument("--out", required=True, help="JSON file for the result")
    p.add_argument("--dtype", default="float32", choices=sections.DTYPES)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--lock-dir", default=LOCK_DIR, help="GPU lock files")
    _add_settings(p, "benchmark", sections.BenchInfer)
    _add_settings(p, "network", sections.Network)
    _add_settings(p, "input pipeline", sections.InputPipeline)

    def run(args):
        from resnet_recipe.benchmarking.throughput import bench_infer

        bench_infer(
            args.out,
            _bench_setup(args, args.val_rec),
            dtype=args.dtype,
            batch_size=args.batch_size,
            bench_settings=_settings(args, sections.BenchInfer),
        )
        return 0

    p.set_defaults(run=run)


def _add_onnx(stages):
    p = stages.add_parser("export-onnx", help="a training run as a float32 NCHW model.onnx")
    p.add_argument("run_dir", help="training run folder (report.json, model-NNNN.params)")
    p.add_argument("out", help="model.onnx to write")
    p.add_argument("--classes", required=True, help="classes.tsv of the packed data")
    p.add_argument("--epoch", type=int, help="checkpoint epoch (default: the final one)")

    def export(args):
        from resnet_recipe.deployment.onnx_export import export_run

        export_run(args.out, run_dir=args.run_dir, epoch=args.epoch, classes_tsv=args.classes)
        return 0

    p.set_defaults(run=export)
    p = stages.add_parser(
        "score-onnx",
        help="onnxruntime against MXNet on the validation set: top-1, top-5, same predictions",
        description="Scores MODEL and the run's checkpoint it was exported from through the "
        "validation pipeline of the run's own input settings (its report.json).",
    )
    p.add_argument("model", help="model.onnx written by export-onnx")
    p.add_argument("run_dir", help="the training run folder it was exported from")
    p.add_argument("--val-rec", required=True, help="validation .rec (its .idx beside it)")
    p.add_argument("--out", required=True, help="JSON file for the result")
    p.add_argument("--epoch", type=int, help="checkpoint epoch (default: the final one)")
    p.add_argument("--batch-size", type=int, default=sections.Score().batch_size_of("float32"))
    p.add_argument("--logit-tolerance", type=float, default=sections.Onnx().logit_tolerance)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="onnxruntime threads")

    def score(args):
        from resnet_recipe.deployment.onnx_inference import score_onnx
        from resnet_recipe.scoring.evaluation import read_run_report

        report_path = os.path.join(args.run_dir, "report.json")
        score_onnx(
            args.out,
            model_path=args.model,
            run_dir=args.run_dir,
            val_rec=args.val_rec,
            val_idx=_index_of(args.val_rec),
            score_settings=sections.Score(
                epoch=args.epoch, batch_size={"float32": args.batch_size}
            ),
            pipeline_settings=sections.InputPipeline.from_config(
                read_run_report(args.run_dir)["pipeline"], f"{report_path}: pipeline"
            ),
            onnx_settings=sections.Onnx(logit_tolerance=args.logit_tolerance),
            threads=args.threads,
            run=os.path.basename(os.path.normpath(args.run_dir)),
        )
        return 0

    p.set_defaults(run=score)


STAGE_PARSERS = [
    preflight.add_command,
    _add_demo_data,
    _add_make_list,
    _add_pack,
    _add_train,
    _add_score,
    _add_bench_train,
    _add_bench_infer,
    _add_onnx,
    _add_report,
    _add_compare,
]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:
        os.environ[DEBUG_VARIABLE] = "1"  # also for the processes a stage starts
    setup_logging(args.log)
    with one_line_errors(parser.prog, logging.getLogger(__name__) if args.log else None):
        return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
