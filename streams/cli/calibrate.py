"""``facestream calibrate DIR``: genuine and impostor scores of your own photos, and the threshold they call for.

``DIR`` holds one folder per person. Every photo's largest face is embedded
in-process; every pair of photos is scored (:mod:`streams.identity.calibration`)
and the command prints the two score distributions, the false-accept and
false-reject rates at a range of thresholds (and at the model's own
same-person threshold), and the threshold that keeps false accepts at
``--target-far``. ``--plot FILE.png`` draws the two histograms and the DET
curve (needs matplotlib: ``pip install 'facestream[calibrate]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..identity.calibration import PairScores, summary
from ..identity.decision import match_threshold
from ._common import IMAGE_SUFFIXES, embed_photos, files_under, largest_face

#: Thresholds of the printed table, besides the model's own and the target's.
TABLE_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.1, 0.85, 0.05))


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("calibrate", help="score photos of known people and choose a match threshold")
    parser.add_argument("dir", metavar="DIR", help="a folder holding one folder of photos per person")
    parser.add_argument(
        "--target-far", type=float, default=0.01, help="false-accept rate to choose a threshold for (default 0.01)"
    )
    parser.add_argument("--plot", metavar="FILE.png", help="draw the score histograms and the DET curve here")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    photos = [p for p in files_under([args.dir], IMAGE_SUFFIXES) if p.parent != Path(args.dir)]
    people, rows = [], []
    for path, result in zip(photos, embed_photos([str(p) for p in photos]), strict=True):
        face = None if "error" in result else largest_face(result)
        if face is None:
            why = result["error"]["message"] if "error" in result else "no face found"
            print(f"facestream calibrate: {path} skipped: {why}", file=sys.stderr)
            continue
        people.append(path.relative_to(args.dir).parts[0])
        rows.append(face["embedding"])
        model = result["model"]
    if len(set(people)) < 2:
        print("facestream calibrate: needs photos of at least two people, one folder each", file=sys.stderr)
        return 1
    scores = PairScores.of(people, np.asarray(rows, dtype=np.float64))
    default = match_threshold(None, None, model)
    chosen = scores.threshold_for(args.target_far)
    thresholds = sorted({*TABLE_THRESHOLDS, round(default, 3), chosen})
    table = [
        {"threshold": t, "far": scores.false_accept(t), "frr": scores.false_reject(t)} for t in thresholds
    ]
    report = {
        "photos": len(people),
        "people": len(set(people)),
        "genuine": summary(scores.genuine),
        "impostor": summary(scores.impostor),
        "model_threshold": default,
        "target_far": args.target_far,
        "threshold_for_target": chosen,
        "frr_at_target": scores.false_reject(chosen),
        "table": table,
    }
    if args.plot:
        plot(scores, default, chosen, args.target_far, args.plot)
        report["plot"] = args.plot
    print(json.dumps(report) if args.json else text(report))
    return 0


def text(report: dict) -> str:
    lines = [f"{report['photos']} photos of {report['people']} people"]
    for name in ("genuine", "impostor"):
        d = report[name]
        if d["count"]:
            lines.append(
                f"{name:9s} pairs {d['count']:5d}  mean {d['mean']:.3f}  std {d['std']:.3f}  min {d['min']:.3f}  "
                f"p5 {d['p5']:.3f}  median {d['median']:.3f}  p95 {d['p95']:.3f}  max {d['max']:.3f}"
            )
        else:
            lines.append(f"{name:9s} pairs     0")
    lines.append("threshold    FAR      FRR")
    for row in report["table"]:
        mark = "  (model)" if row["threshold"] == round(report["model_threshold"], 3) else ""
        mark = "  (target)" if row["threshold"] == report["threshold_for_target"] else mark
        lines.append(f"{row['threshold']:9.3f}  {row['far']:7.4f}  {row['frr']:7.4f}{mark}")
    lines.append(
        f"threshold for FAR <= {report['target_far']:g}: {report['threshold_for_target']:.3f} "
        f"(FRR {report['frr_at_target']:.4f}); the model's same-person threshold: {report['model_threshold']:.3f}"
    )
    if "plot" in report:
        lines.append(f"plot: {report['plot']}")
    return "\n".join(lines)


def plot(scores: PairScores, default: float, chosen: float, target_far: float, path: str) -> None:
    """Two panels: the genuine and impostor histograms with both thresholds, and the DET curve."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # a file, never a window
        from matplotlib import pyplot
    except ImportError:
        raise SystemExit("facestream calibrate: --plot needs matplotlib: pip install 'facestream[calibrate]'") from None
    figure, (hist, det) = pyplot.subplots(1, 2, figsize=(11, 4.5))
    bins = np.linspace(-0.3, 1.0, 53)
    hist.hist(scores.impostor, bins=bins, alpha=0.6, density=True, label=f"impostor ({len(scores.impostor)} pairs)")
    hist.hist(scores.genuine, bins=bins, alpha=0.6, density=True, label=f"genuine ({len(scores.genuine)} pairs)")
    hist.axvline(default, color="k", linestyle="--", label=f"model threshold {default:.3f}")
    hist.axvline(chosen, color="r", linestyle=":", label=f"FAR <= {target_far:g}: {chosen:.3f}")
    hist.set(xlabel="cosine similarity", ylabel="density", title="Score distributions")
    hist.legend(fontsize="small")
    _, far, frr = scores.curve()
    det.plot(far, frr, drawstyle="steps-post")
    for t, style, name in ((default, "ko", "model"), (chosen, "r^", "target")):
        det.plot(scores.false_accept(t), scores.false_reject(t), style, label=f"{name} threshold {t:.3f}")
    det.set(xlabel="false-accept rate", ylabel="false-reject rate", title="DET curve", xlim=(-0.02, 1.02),
            ylim=(-0.02, 1.02))
    det.grid(True, alpha=0.3)
    det.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
