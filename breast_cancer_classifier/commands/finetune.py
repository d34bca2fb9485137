"""Fine-tune the exam classifiers on your own labelled exams.

Writes best.p, last.p and metrics.csv:

    bcc finetune --exam-list my_data/exam_list.pkl --data-folder my_data/images \
        --output-dir my_finetune --init models/sample_image_model.p --model-mode view_split

Labels come from the exam list's ``cancer_label`` or from ``--labels`` (the CSV that
``evaluate`` reads). The checkpoints are in the original's format: run.sh, run_model.py and
run_model_single.py load them unchanged.
"""

import argparse

from breast_cancer_classifier.cli import (add_device_flags, add_overwrite_flag,
                                          add_precision_flag, add_trust_flag, positive_int,
                                          run_cli)
from breast_cancer_classifier.core.home import default_weight_path
from breast_cancer_classifier.tools.finetune import FinetuneSettings, finetune
from breast_cancer_classifier.tools.finetune.run import PATCH_MODEL_NAME


def build_parser(prog=None):
    d = FinetuneSettings()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--exam-list", required=True,
                        help="training exam list before cropping (pickle or .json)")
    parser.add_argument("--data-folder", required=True, help="folder of the input PNGs")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--init", required=True, help="checkpoint to start from (official, "
                        "demo or an earlier fine-tune), in the original's format")
    parser.add_argument("--model-mode", choices=["view_split", "image"], default=d.model_mode)
    parser.add_argument("--use-heatmaps", action="store_true",
                        help="image+heatmaps model (heatmaps made once into the cache)")
    parser.add_argument("--labels", help="labels CSV (left_benign,right_benign,"
                        "left_malignant,right_malignant) for --exam-list; default: its "
                        "exams' cancer_label")
    val = parser.add_mutually_exclusive_group()
    val.add_argument("--val-exam-list", help="validation exam list (before cropping)")
    val.add_argument("--val-fraction", type=float, help="share of exams (whole patients, "
                     "by patient_id) held out for validation, seeded (default 0.2)")
    parser.add_argument("--val-labels", help="labels CSV for --val-exam-list")
    parser.add_argument("--epochs", type=positive_int, default=d.epochs)
    parser.add_argument("--freeze-columns-epochs", type=int, default=d.freeze_columns_epochs,
                        help="train only the heads for this many epochs first (default 0)")
    parser.add_argument("--lr", type=float, default=d.lr, help="heads' peak learning rate")
    parser.add_argument("--column-lr", type=float, default=d.column_lr,
                        help="columns' peak learning rate once unfrozen")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps,
                        help="optimizer steps of linear warm-up (default: a tenth of the run)")
    parser.add_argument("--effective-batch-size", type=positive_int,
                        default=d.effective_batch_size,
                        help="exams per optimizer step, by gradient accumulation")
    parser.add_argument("--malignant-weight", type=float, default=d.malignant_weight,
                        help="loss weight of a malignant breast (malignant is rare)")
    parser.add_argument("--benign-weight", type=float, default=d.benign_weight)
    parser.add_argument("--val-num-epochs", type=positive_int, default=d.val_num_epochs,
                        help="augmented passes averaged in validation (default 10, as run.sh)")
    parser.add_argument("--patience", type=positive_int, default=d.patience,
                        help="stop after this many epochs without a better malignant AUC")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--train-batchnorm", action="store_true",
                        help="update BatchNorm statistics (default: frozen, in eval mode)")
    add_precision_flag(parser)
    parser.add_argument("--cache-dir", help="stages 1-3 cache (default OUTPUT/cache); "
                        "reused by later runs over the same exams")
    parser.add_argument("--patch-model-path", default=default_weight_path(PATCH_MODEL_NAME),
                        help="patch classifier for the heatmaps (with --use-heatmaps)")
    parser.add_argument("--num-processes", type=positive_int, default=1,
                        help="processes for stages 1-2 (default 1)")
    add_device_flags(parser)
    parser.set_defaults(device_type="gpu")
    add_trust_flag(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output-dir from last.p")
    parser.add_argument("--stop-after-epoch", type=positive_int,
                        help="stop after this epoch (continue later with --resume)")
    add_overwrite_flag(parser)
    return parser


def settings_from(args):
    return FinetuneSettings(
        model_mode=args.model_mode, use_heatmaps=args.use_heatmaps, epochs=args.epochs,
        freeze_columns_epochs=args.freeze_columns_epochs, lr=args.lr, column_lr=args.column_lr,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        effective_batch_size=args.effective_batch_size, benign_weight=args.benign_weight,
        malignant_weight=args.malignant_weight, val_num_epochs=args.val_num_epochs,
        patience=args.patience, seed=args.seed, train_batchnorm=args.train_batchnorm,
        precision=args.precision)


def main(argv=None, prog=None):
    parser = build_parser(prog)
    args = parser.parse_args(argv)

    def body():
        return finetune(args.exam_list, args.data_folder, args.output_dir, args.init,
                        settings_from(args), labels_path=args.labels,
                        val_exam_list_path=args.val_exam_list, val_labels_path=args.val_labels,
                        val_fraction=args.val_fraction, cache_dir=args.cache_dir,
                        patch_model_path=args.patch_model_path, device_type=args.device_type,
                        gpu_number=args.gpu_number, trust_checkpoint=args.trust_checkpoint,
                        num_processes=args.num_processes, resume=args.resume,
                        overwrite=args.overwrite, stop_after_epoch=args.stop_after_epoch)

    run_cli(parser.prog, body)


if __name__ == "__main__":
    main()
