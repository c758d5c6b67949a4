"""The evaluation report: `report.html` (tables and plots, models side by side), the PNGs it
shows, a gallery of the worst false positives and misses with boxes drawn, and `report.json`
with every number. Static: opens from disk, fetches nothing."""

from __future__ import annotations

import html
import json
from pathlib import Path

import cv2
import numpy as np

from engine.storage import atomic_write_text


def _plots(result: dict, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = {name: m["frames"] for name, m in result["models"].items() if m.get("frames")}
    made = {}
    if not frames:
        return made

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        made[name.removesuffix(".png")] = name

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, f in frames.items():
        pr = f["pr_curve"]
        ax.plot([p["recall"] for p in pr], [p["precision"] for p in pr], marker=".", label=name)
    ax.set(xlabel="recall (objects)", ylabel="precision", title="Precision-recall (IoU 0.5)", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend()
    save(fig, "pr_curves.png")

    fig, axes = plt.subplots(1, len(frames), figsize=(4 * len(frames), 3.2), squeeze=False)
    for ax, (name, f) in zip(axes[0], frames.items()):
        ax.hist([f["scores"]["positive"], f["scores"]["negative"]], bins=20, range=(0, 1), label=["work zone", "no object"])
        ax.axvline(result["conf_threshold"], color="k", linestyle="--")
        ax.set(title=f"{name}: top score per frame", xlabel="confidence")
        ax.legend(fontsize=7)
    save(fig, "score_histograms.png")

    fig, axes = plt.subplots(1, len(frames), figsize=(3.2 * len(frames), 3), squeeze=False)
    for ax, (name, f) in zip(axes[0], frames.items()):
        c = f["frames"]
        grid = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(grid, cmap="Blues")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, str(v), ha="center", va="center")
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["no alarm", "alarm"], yticklabels=["no object", "object"],
               title=f"{name}: frames")
    save(fig, "confusion.png")

    kinds = sorted({k for f in frames.values() for k in f["fp_by_kind"]})
    if kinds:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        width = 0.8 / len(frames)
        for i, (name, f) in enumerate(frames.items()):
            ax.bar(np.arange(len(kinds)) + i * width, [f["fp_by_kind"].get(k, {}).get("fp_rate", 0) for k in kinds], width,
                   label=name)
        ax.set(xticks=np.arange(len(kinds)) + width * (len(frames) - 1) / 2, xticklabels=kinds, ylabel="FP rate",
               title="False alarms by lookalike category")
        ax.legend()
        save(fig, "fp_by_category.png")

    fig, axes = plt.subplots(1, len(frames), figsize=(4 * len(frames), 3.5), squeeze=False)
    for ax, (name, f) in zip(axes[0], frames.items()):
        cal = f["calibration"]
        for key, label in (("bins_before", "raw"), ("bins_after", f"T = {cal.get('temperature', 1):.2f}")):
            bins = cal.get(key, [])
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", label=label)
        ax.plot([0, 1], [0, 1], "k:", linewidth=1)
        ax.set(xlabel="confidence", ylabel="share correct", title=f"{name}: reliability", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7)
    save(fig, "calibration.png")
    return made


def _gallery(result: dict, frames_table, dets_by_model: dict, out: Path, n: int) -> dict[str, list[dict]]:
    gallery = {}
    for name, f in result["models"].items():
        if not f.get("frames"):
            continue
        items = []
        for kind, indices in (("false positive", f["frames"]["worst_false_positives"][:n]),
                              ("miss", f["frames"]["worst_misses"][:n])):
            for i in indices:
                row, d = frames_table.iloc[i], dets_by_model[name][i]
                img = cv2.imread(row["path"])
                keep = d["conf"] >= result["conf_threshold"]
                for (x1, y1, x2, y2) in d["gt_xyxy"]:
                    cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), (0, 200, 0), 1)
                for (x1, y1, x2, y2), c in zip(d["xyxy"][keep], d["conf"][keep]):
                    cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), (0, 0, 255), 1)
                    cv2.putText(img, f"{c:.2f}", (int(x1), max(8, int(y1) - 2)), 0, 0.3, (0, 0, 255), 1)
                rel = f"gallery/{name}_{kind.replace(' ', '_')}_{i}.jpg"
                (out / "gallery").mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(out / rel), img)
                what = row.get("lookalike_kind")
                items.append({"kind": kind, "image": rel, "frame": Path(row["path"]).name,
                              "what": str(what if isinstance(what, str) else row.get("kind"))})
        gallery[name] = items
    return gallery


def _table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(result: dict, out: Path, frames_table=None, dets_by_model: dict | None = None, gallery_n: int = 6) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(result, out)
    gallery = _gallery(result, frames_table, dets_by_model, out, gallery_n) if dets_by_model else {}
    models = result["models"]
    parts = [f"<h1>Quarry evaluation</h1><p>{html.escape(result.get('description', ''))}</p>"]
    summary = []
    for name, m in models.items():
        row = {"model": name, "source": m["source"] + (f" (the weights of {m['same_weights_as']})"
                                                       if m.get("same_weights_as") else "")}
        if m.get("frames"):
            fr, ob = m["frames"]["frames"], m["frames"]["objects"]
            row.update({"frame precision": fr["precision"], "frame recall": fr["recall"], "F1": fr["f1"], "MCC": fr["mcc"],
                        "FP rate (frames)": fr["fp_rate"], "mAP50": ob["map50"], "mAP50-95": ob["map50_95"]})
        if m.get("events"):
            ev = m["events"]
            row.update({"event recall": ev["event_recall"], "false alarms / video": ev["false_alarms_per_video"],
                        "false alarms / hour": ev["false_alarms_per_hour"]})
        if m.get("segmentation"):
            px = m["segmentation"]["pixels"]
            row.update({"pixel precision": px["precision"], "pixel recall": px["recall"], "pixel F1": px["f1"],
                        "FP rate (authentic)": px["fp_rate"]})
        summary.append(row)
    columns = list(dict.fromkeys(c for r in summary for c in r))
    parts.append("<h2>Side by side</h2>" + _table(summary, columns))
    for name, m in models.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        if m.get("same_weights_as"):
            parts.append(f"<p>The same weights as {html.escape(m['same_weights_as'])}, scored once: the figures below "
                         "are its.</p>")
        if m.get("frames"):
            f = m["frames"]
            cal = f["calibration"]
            if "temperature" in cal:
                parts.append(f"<p>Calibration of detection confidences: ECE {cal['ece_before']:.3f} raw, "
                             f"{cal['ece_after']:.3f} after temperature {cal['temperature']:.2f} (fitted on the other half).</p>")
            parts.append("<h3>Slices, worst first</h3>" + _table(
                f["slices"], ["slice", "value", "frames", "positives", "precision", "recall", "f1", "mcc", "fp_rate"]))
        if m.get("segmentation"):
            parts.append("<h3>Slices</h3>" + _table(m["segmentation"]["slices"],
                                                     ["slice", "value", "precision", "recall", "f1", "fp_rate"]))
        if m.get("events"):
            parts.append("<h3>Videos</h3>" + _table(m["events"]["per_video"], ["video", "video_label", "events", "duration_s"]))
        if gallery.get(name):
            cards = "".join(f'<figure><img src="{html.escape(g["image"])}" alt="{html.escape(g["frame"])}">'
                            f'<figcaption>{html.escape(g["kind"])}: {html.escape(g["frame"])} ({html.escape(g["what"])})'
                            f"</figcaption></figure>" for g in gallery[name])
            parts.append(f'<h3>Worst false positives and misses (green: truth, red: detections)</h3><div class="gallery">{cards}</div>')
    if plots:
        parts.append("<h2>Plots</h2>" + "".join(f'<img class="plot" src="{p}" alt="{k}">' for k, p in plots.items()))
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Quarry evaluation</title><style>"
            "body{font:13px system-ui,sans-serif;margin:16px} table{border-collapse:collapse;margin:8px 0}"
            "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right} th{background:#f0f0f0}"
            ".gallery{display:flex;flex-wrap:wrap;gap:6px} figure{margin:0;width:260px} figure img{width:256px}"
            "figcaption{font-size:11px} .plot{max-width:48%;margin:4px}</style></head><body>"
            + "".join(parts) + "</body></html>")
    atomic_write_text(out / "report.html", page)
    atomic_write_text(out / "report.json", json.dumps(result, indent=1, default=str))
    return out / "report.html"
