"""`streamseg synth images|videos`: generate shapes-world data with exact ground truth."""

from __future__ import annotations

import argparse

HELP = "generate shapes-world images (COCO panoptic) or videos (VIPSeg-style + mp4)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["images", "videos"], help="what to generate")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n", type=int, default=100, help="number of images or videos")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first item")
    parser.add_argument(
        "--size",
        type=int,
        nargs="+",
        default=[256],
        metavar="PX",
        help="frame size: one number (square) or HEIGHT WIDTH",
    )
    parser.add_argument("--frames", type=int, default=48, help="frames per video")
    parser.add_argument("--fps", type=float, default=12.0, help="frame rate of the mp4 files")
    parser.add_argument("--no-mp4", action="store_true", help="do not encode mp4 files")
    parser.add_argument(
        "--format",
        choices=["jpg", "png"],
        default="jpg",
        help="image file format (png is lossless)",
    )


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from streamseg.errors import UserError
    from streamseg.synthetic.scene import SceneConfig, render_image
    from streamseg.synthetic.video import VideoConfig, render_video
    from streamseg.synthetic.writers import write_coco_panoptic, write_vipseg

    if len(args.size) not in (1, 2) or min(args.size) < 32:
        raise UserError("--size: give one or two sizes of at least 32 pixels")
    height, width = (args.size[0], args.size[0]) if len(args.size) == 1 else args.size
    if args.n < 1:
        raise UserError("--n: must be at least 1")
    if args.kind == "images":
        config = replace(SceneConfig(), height=height, width=width)
        scenes = (render_image(args.seed + i, config) for i in range(args.n))
        write_coco_panoptic(args.out, scenes, image_format=args.format)
    else:
        if height % 2 or width % 2:
            raise UserError("--size: videos need even sizes (H.264 yuv420p)")
        video_config = replace(VideoConfig(), height=height, width=width, num_frames=args.frames)
        videos = (
            (f"video_{args.seed + i:06d}", render_video(args.seed + i, video_config))
            for i in range(args.n)
        )
        write_vipseg(args.out, videos, image_format=args.format, fps=args.fps, mp4=not args.no_mp4)
    print(f"wrote {args.n} {args.kind} to {args.out}")
    return 0
