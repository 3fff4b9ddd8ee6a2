"""`streamseg eval panoptic|semantic|video|instance`: standard metrics on standard formats.

With `--json`, stdout is one JSON object (values as fractions in [0, 1], the reference APIs'
convention); without it, a readable table in percent.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = "score predictions: PQ (COCO panoptic), mIoU, instance AP, VPQ + STQ (VIPSeg format)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="task", metavar="TASK")
    sub.required = True

    panoptic = sub.add_parser("panoptic", help="PQ / SQ / RQ as COCO panopticapi")
    _add_panoptic_inputs(panoptic)
    panoptic.add_argument("--json", action="store_true", help="print one JSON object")

    semantic = sub.add_parser(
        "semantic",
        help="mIoU / pixel accuracy from label PNG folders, or from COCO-panoptic inputs "
        "(with --gt-json and --pred-json)",
    )
    semantic.add_argument("--gt-dir", required=True, help="ground-truth PNG folder")
    semantic.add_argument("--pred-dir", required=True, help="prediction PNG folder")
    semantic.add_argument("--gt-json", help="COCO panoptic JSON: score panoptic PNGs by class")
    semantic.add_argument("--pred-json", help="COCO panoptic JSON of the predictions")
    semantic.add_argument(
        "--num-classes", type=int, help="classes 0..N-1 (default: largest label + 1)"
    )
    semantic.add_argument("--ignore", type=int, default=255, help="ignore label (default 255)")
    semantic.add_argument("--json", action="store_true", help="print one JSON object")

    video = sub.add_parser("video", help="VPQ (VIPSeg's script) and STQ / AQ / SQ (deeplab2)")
    video.add_argument("--gt-json", required=True, help="VIPSeg-format ground-truth JSON")
    video.add_argument("--gt-dir", required=True, help="folder of <video>/<frame>.png")
    video.add_argument(
        "--pred-json",
        help="VIPSeg-format prediction JSON; 'annotations' alone will do (VIPSeg's pred.json)",
    )
    video.add_argument("--pred-dir", help="folder of <video>/<frame>.png predictions")
    video.add_argument(
        "--pred-format",
        choices=("vipseg", "deeplab2"),
        default="vipseg",
        help="vipseg: COCO-panoptic PNGs + --pred-json (default); deeplab2: PNGs with "
        "R = semantic, G * 256 + B = instance, no JSON",
    )
    video.add_argument(
        "--pred-store", help="a streamseg store (.zarr) as the prediction of one video"
    )
    video.add_argument("--video", help="with --pred-store: the ground-truth video id")
    video.add_argument(
        "--category-map", help="with --pred-store: JSON {store class: category id or name}"
    )
    video.add_argument(
        "--windows", default="1,2,4,6,8", help="VPQ window lengths in frames (default 1,2,4,6,8)"
    )
    video.add_argument("--json", action="store_true", help="print one JSON object")

    instance = sub.add_parser(
        "instance",
        help="COCO segm AP through pycocotools; video instance AP for YouTube-VIS ground truth",
    )
    instance.add_argument("--gt-json", required=True, help="COCO instances or YouTube-VIS JSON")
    instance.add_argument(
        "--pred-json", required=True, help="COCO results or YouTube-VIS results JSON (RLE masks)"
    )
    instance.add_argument("--json", action="store_true", help="print one JSON object")


def _add_panoptic_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt-json", required=True, help="COCO panoptic ground-truth JSON")
    parser.add_argument("--gt-dir", required=True, help="ground-truth panoptic PNG folder")
    parser.add_argument("--pred-json", required=True, help="COCO panoptic prediction JSON")
    parser.add_argument("--pred-dir", required=True, help="prediction panoptic PNG folder")


def run(args: argparse.Namespace) -> int:
    from streamseg.errors import UserError

    if args.task == "panoptic":
        from streamseg.eval.panoptic import evaluate_coco_panoptic

        result = evaluate_coco_panoptic(args.gt_json, args.gt_dir, args.pred_json, args.pred_dir)
        _emit(result, args.json, format_panoptic)
    elif args.task == "semantic":
        from streamseg.eval.semantic import evaluate_label_pngs, evaluate_panoptic_as_semantic

        if bool(args.gt_json) != bool(args.pred_json):
            raise UserError("--gt-json and --pred-json go together (panoptic inputs)")
        if args.gt_json:
            result = evaluate_panoptic_as_semantic(
                args.gt_json, args.gt_dir, args.pred_json, args.pred_dir, args.ignore
            )
        else:
            result = evaluate_label_pngs(args.gt_dir, args.pred_dir, args.num_classes, args.ignore)
        _emit(result, args.json, format_semantic)
    elif args.task == "video":
        from streamseg.eval.video import evaluate_vipseg, parse_windows

        windows = parse_windows(args.windows)
        if args.pred_store:
            if args.pred_json or args.pred_dir:
                raise UserError("--pred-store replaces --pred-json / --pred-dir: give one or other")
            from streamseg.eval.store import evaluate_store

            result = evaluate_store(
                args.pred_store,
                args.gt_json,
                args.gt_dir,
                video_id=args.video,
                category_map=args.category_map,
                windows=windows,
            )
        elif args.pred_format == "deeplab2":
            if args.pred_json or not args.pred_dir:
                raise UserError("--pred-format deeplab2 reads --pred-dir alone (no --pred-json)")
            from streamseg.eval.deeplab2 import evaluate_deeplab2_video

            result = evaluate_deeplab2_video(args.gt_json, args.gt_dir, args.pred_dir, windows)
        else:
            if not (args.pred_json and args.pred_dir):
                raise UserError("give --pred-json and --pred-dir (or --pred-store)")
            result = evaluate_vipseg(
                args.gt_json, args.gt_dir, args.pred_json, args.pred_dir, windows
            )
        _emit(result, args.json, format_video)
    else:
        from streamseg.eval.instance import evaluate_instances

        result = evaluate_instances(args.gt_json, args.pred_json)
        _emit(result, args.json, format_instance)
    return 0


def _emit(result: dict[str, Any], as_json: bool, formatter: Any) -> None:
    if as_json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(formatter(result))


def _pq_rows(result: dict[str, Any]) -> list[str]:
    rows = [f"{'':10s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s} {'N':>5s}", "-" * 38]
    for name in ("All", "Things", "Stuff"):
        r = result[name]
        n = f"{r['n']:5d}" if "n" in r else ""
        rows.append(
            f"{name:10s}| {100 * r['pq']:5.1f}  {100 * r['sq']:5.1f}  {100 * r['rq']:5.1f} {n}"
        )
    return rows


def format_panoptic(result: dict[str, Any]) -> str:
    """The panopticapi table (percent)."""
    return "\n".join(_pq_rows(result))


def format_semantic(result: dict[str, Any]) -> str:
    lines = [f"mIoU {100 * result['miou']:.2f}   pixel accuracy {100 * result['pixel_acc']:.2f}"]
    for name, iou in result["per_class_iou"].items():
        if iou is not None:
            lines.append(f"  class {name:>6s}  IoU {100 * iou:6.2f}")
    return "\n".join(lines)


def format_video(result: dict[str, Any]) -> str:
    lines = []
    for window, table in result["vpq"].items():
        title = "VPQ mean over windows" if window == "mean" else f"VPQ window {window} frames"
        lines += [title, *_pq_rows(table), ""]
    stq = result["stq"]
    lines.append(
        f"STQ {100 * stq['stq']:.2f}   AQ {100 * stq['aq']:.2f}   SQ (mIoU) {100 * stq['sq']:.2f}"
    )
    if result.get("unmapped_classes"):
        lines.append(
            f"store classes without a category (scored as void): {result['unmapped_classes']}"
        )
    return "\n".join(lines)


def format_instance(result: dict[str, Any]) -> str:
    return "\n".join(f"{name:6s} {100 * value:6.2f}" for name, value in result.items())
