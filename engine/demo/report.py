"""The demo's report (demo_report.md and the job's printed summary): what each step made and
the figures that say whether it worked, in the order the steps ran."""

from __future__ import annotations


def _how(step: dict) -> str:
    return "reused (unchanged)" if step["reused"] else f"{step['step_seconds']:.0f} s"


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def format_report(result: dict) -> str:
    st = result["steps"]
    s = st["synth"]
    v, d, g = s["videos"], s["detection_images"], s["segmentation_images"]
    lines = [
        f"# Quarry demo — {result['work_dir']}", "",
        f"1. synth [{_how(s)}]: {v['tp'] + v['fp'] + v['clean']} H.264 videos ({v['tp']} work-zone tp, {v['fp']} lookalike fp, "
        f"{v['clean']} clean; {s['video_frames']} frames), YOLO set {d['train']} train / {d['val']} val, "
        f"held-out {d['heldout_workzone']} work-zone + {d['heldout_lookalike']} lookalike frames, "
        f"{g['authentic']} authentic ({g['dark']} dark) + {g['forged']} forged segmentation images "
        f"(+ {g.get('heldout_authentic', 0)} + {g.get('heldout_forged', 0)} held out), "
        f"{s.get('caption_images', {}).get('images', 0)} captioned frames"]
    if "pretrain" in st:
        lines += _detection_lines(result)
    if "segmenter" in st:
        lines += _segmentation_lines(st, first=12 if "pretrain" in st else 2)
    lines += final_lines(result)
    return "\n".join(lines) + "\n"


def _detection_lines(result: dict) -> list[str]:
    """Steps 2-11 and later rounds."""
    st = result["steps"]
    p = st["pretrain"]
    wz, la = p["heldout"]["workzone"], p["heldout"]["lookalike"]
    lines = [
        f"2. pretrain [{_how(p)}]: base detector {p['weights']}", "",
        f"   Base model on held-out frames (conf >= {p['heldout']['conf_threshold']}, IoU >= {p['heldout']['iou_threshold']}):", "",
        "   | frames | images | precision | recall | FP rate (frames with any detection) | FPs per frame |",
        "   |---|---|---|---|---|---|",
        f"   | work zone | {wz['images']} | {wz['precision']:.3f} | {wz['recall']:.3f} | — | — |",
        f"   | lookalike (no objects) | {la['images']} | — | — | {la['fp_rate']:.3f} | {la['fp_per_image']:.3f} |",
    ]
    if "clip" in p:
        c = p["clip"]
        lines += ["", f"   Tiny CLIP trained on {c['images']} captioned frames ({c['epochs']} epochs, {c['seconds']:.0f} s), "
                      f"on held-out frames:", "",
                  "   | CLIP | work-zone ROC AUC (work zone vs lookalike) | zero-shot lookalike-kind accuracy |",
                  "   |---|---|---|",
                  f"   | random weights | {c['random']['workzone_auc']:.3f} | {c['random']['lookalike_kind_accuracy']:.3f} |",
                  f"   | trained | {c['trained']['workzone_auc']:.3f} | {c['trained']['lookalike_kind_accuracy']:.3f} |"]
    for n, name in ((3, "mine"), (4, "flicker")):
        m = st[name]
        io = m["inputs"]
        lines += ["", f"{n}. {name} [{_how(m)}]: {m['mode']} mode over {io['total']} videos ({io['processed']} mined, "
                      f"{io['skipped_done']} already done, {io['errored']} errored), {m['frames_scored']} frames scored, "
                      f"{m['candidates']['candidates']} candidate frames -> {m['out_dir']}/candidates.parquet",
                  "   frame outcomes: " + ", ".join(f"{k} {v}" for k, v in m["reasons"].items())]
    t = st["flicker"]["truth"]
    lines.append(f"   flicker boxes that match no drawn work-zone object: {t['not_real_objects']} of {t['flicker_boxes']} "
                 f"({_pct(t['share_not_real'])})")
    if "edges" in st:
        e, et = st["edges"], st["edges"]["truth"]
        lines += ["", f"   edges [{_how(e)}]: edge-case mode over the {e['inputs']['total']} work-zone videos, "
                      f"{e['candidates']['candidates']} frames in the fused-score band -> {e['out_dir']}/candidates.parquet; "
                      f"ground truth: {_pct(et['share_with_objects'])} show real work-zone objects, "
                      f"{_pct(et['share_inside_zone'])} are inside a zone"]
    lab = st["label"]
    f, tr = lab["frames"], lab.get("truth", {})
    lines += ["", f"5. label [{_how(lab)}]: {f['labelled']} frames: {f.get('hard_negative', 0)} hard negatives, "
                  f"{f.get('pseudo_labelled', 0)} pseudo-labelled, {f.get('unused', 0)} unused (tp frames with no box "
                  f">= the keep bound); boxes by reason: " + ", ".join(f"{k} {v}" for k, v in lab["boxes"]["by_reason"].items())]
    if tr.get("boxes"):
        fa = tr["false_alarm_videos"]
        lines.append(f"   against ground truth: dropped boxes in false-alarm videos that were not real objects "
                     f"{_pct(fa['dropped_not_real'])} of {fa['dropped']}; kept boxes that were real {_pct(tr['kept_real'])} "
                     f"of {tr['kept']}")
    r = st["review"]
    acc = r["category_accuracy"]
    categories = ("CLIP zero-shot categories " + ", ".join(f"{k} {v}" for k, v in r["categorised"].items())
                  + f"; right for {_pct(acc['accuracy'])} of {acc['candidates']} (the world knows each lookalike)"
                  if acc else "not categorised (no CLIP trained: clip.enabled=false)")
    lines += ["", f"6. review [{_how(r)}]: {categories}; {r['accepted']} accepted as hard negatives; "
                  f"contact sheet {r['sheet']}"]
    b = st["build"]
    lines += ["", f"7. build [{_how(b)}]: {b['samples']['train']} train / {b['samples']['val']} val samples "
                  f"({b['duplicates_dropped']} near-duplicates dropped, {len(b['errors'])} errors) -> {b['out_dir']}", "",
              "   | kind (train) | samples | share | share after weighting |", "   |---|---|---|---|",
              *[f"   | {k} | {x['samples']} | {x['share']:.3f} | {x['weighted_share']:.3f} |"
                for k, x in b["effective_share_train"].items()]]
    if b["by_kind"].get("edge_case"):
        lines.append(f"   {b['by_kind']['edge_case']} edge cases with labels from the world's ground truth "
                     "(the demo's stand-in for a labeller)")
    if b.get("by_category"):
        lines.append("   hard negatives by category: " + ", ".join(f"{k} {v}" for k, v in b["by_category"].items()))
    t = st["train"]
    m = t["models"]["detector"]
    lines += ["", f"8. train [{_how(t)}]: fine-tuned on {m['epochs_run']} epochs on Ray Train (best epoch {m['best_epoch']}) "
                  f"-> {m['best_model']}" + (f"; registered {m['registered']['name']} version {m['registered']['version']}"
                                             if "registered" in m else ""), "",
              "   Base vs fine-tuned on the held-out frames (conf >= 0.25, IoU >= 0.5):", "",
              "   | model | lookalike FP rate | lookalike FPs per frame | work-zone precision | work-zone recall | work-zone mAP50 |",
              "   |---|---|---|---|---|---|"]
    for name, h in t["heldout"].items():
        wz, la = h["workzone"], h["lookalike"]
        lines.append(f"   | {name.replace('_', '-')} | {la['fp_rate']:.3f} | {la['fp_per_image']:.3f} | {wz['precision']:.3f} | "
                     f"{wz['recall']:.3f} | {wz.get('map50', float('nan')):.3f} |")
    lines += _loop_sections(st)
    for later in result.get("rounds", []):
        lines += _round_lines(later)
    return lines


def _segmentation_lines(st: dict, first: int) -> list[str]:
    """The segmentation branch's steps, numbered from `first`."""
    sg = st["segmenter"]["segmenter"]
    h = sg["heldout"]
    sc, tr = st["scan"], st["scan"]["truth"]
    seg = st["segment"]
    lines = ["", f"{first}. segmenter [{_how(st['segmenter'])}]: base segmenter {sg['checkpoint']} ({sg['arch']}/{sg['encoder']}"
                 f"{' + noise residual' if sg.get('noise_residual') else ''}, {sg['epochs']} epochs) on held-out "
                 f"images: pixel precision {h['precision']:.3f}, recall {h['recall']:.3f}, F1 {h['f1']:.3f}; "
                 f"FP rate on authentic images {h['fp_rate']:.3f}",
             "", f"{first + 1}. scan [{_how(sc)}]: {sc['scanned']} authentic training images, {sc['flagged']} flagged by "
                 f"the base segmenter -> {sc['hard_negatives']} hard negatives; {tr['flagged_with_smudge']} of "
                 f"{tr['flagged']} flagged images carry the world's lookalike smudge",
             "", f"{first + 2}. segment [{_how(seg)}]: {seg['build']['samples']['train']} train / "
                 f"{seg['build']['samples']['val']} val samples; fine-tuned with seed 003's loss on Ray Train", "",
             "   | model (held-out images) | pixel precision | pixel recall | F1 | FP rate on authentic images |",
             "   |---|---|---|---|---|"]
    for name, h in seg["heldout"].items():
        lines.append(f"   | {name} | {h['precision']:.3f} | {h['recall']:.3f} | {h['f1']:.3f} | {h['fp_rate']:.3f} |")
    return lines


DETECTION_KEYS = ("fp_rate", "false_alarms_per_video", "event_recall", "frame_recall", "map50")
SEGMENTATION_KEYS = ("fp_rate", "pixel_recall")


def final_figures(result: dict) -> dict:
    """The final table's figures under stable keys (demo_summary.json's `final`, and MLflow)."""
    st = result["steps"]
    final: dict = {"seconds": {name: step["step_seconds"] for name, step in st.items()}}
    if "evaluate" in st:
        final.update({"detection": {name: {k: row.get(k) for k in DETECTION_KEYS}
                                    for name, row in st["evaluate"]["models"].items()},
                      "promotion": st["promote"]["decision"],
                      "rounds": [{"round": 1, "model": "tuned", "decision": st["promote"]["decision"],
                                  **{k: st["evaluate"]["models"]["tuned"].get(k) for k in DETECTION_KEYS}}]})
    for later in result.get("rounds", []):
        r, rs = later["round"], later["steps"]
        row = rs["evaluate"]["models"][f"round{r}"]
        final["detection"][f"round{r}"] = {k: row.get(k) for k in DETECTION_KEYS}
        final["rounds"].append({"round": r, "model": f"round{r}", "decision": rs["promote"]["decision"],
                                **final["detection"][f"round{r}"]})
        final["seconds"].update({f"round{r}.{name}": step["step_seconds"] for name, step in rs.items()})
    if "segment" in st:
        final["segmentation"] = {name: {"fp_rate": h["fp_rate"], "pixel_recall": h["recall"]}
                                 for name, h in st["segment"]["heldout"].items()}
    final["machine"] = result["machine"]  # the figures depend on the processor's kernels (engine/machine.py)
    return final


def final_lines(result: dict) -> list[str]:
    final, st = result["final"], result["steps"]
    lines = ["", "## Held-out results (other seeds than all training and mining data)"]
    if "detection" in final:
        lines += ["", "| detector | lookalike-frame FP rate | false alarms / fp-or-clean video | event recall | "
                      "frame recall | mAP50 |", "|---|---|---|---|---|---|"]
        evaluated = st["evaluate"]["models"]
        lines += [f"| {_model_label(name, evaluated.get(name, {}))} | " + " | ".join(_num(row[k]) for k in DETECTION_KEYS)
                  + " |" for name, row in final["detection"].items()]
    if len(final.get("rounds", [])) > 1:
        lines += ["", "Each round's challenger (round 1: the tuned model; later rounds: the promoted model fine-tuned "
                      "again on fresh videos' hard negatives):", "",
                  "| round | lookalike-frame FP rate | false alarms / fp-or-clean video | event recall | frame recall | "
                  "mAP50 | promotion |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {row['round']} | " + " | ".join(_num(row[k]) for k in DETECTION_KEYS) + f" | {row['decision']} |"
                  for row in final["rounds"]]
    if "segmentation" in final:
        lines += ["", "| segmenter | FP rate on authentic images | pixel recall |", "|---|---|---|"]
        lines += [f"| {name} | {_num(row['fp_rate'])} | {_num(row['pixel_recall'])} |"
                  for name, row in final["segmentation"].items()]
    total = sum(final["seconds"].values())
    promotion = f"promotion: {final['promotion']}; " if "promotion" in final else ""
    lines += ["", f"{promotion}steps took {total:.0f} s (" +
              ", ".join(f"{k} {v:.0f}" for k, v in final["seconds"].items()) + ")"]
    m = final["machine"]
    lines.append(f"computed on:   {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_cpu_capability']} "
                 "kernels (figures differ between processors: docs/demo.md)")
    db = result["tracking_uri"].removeprefix("sqlite:///")
    lines.append("")
    if "evaluate" in st:
        lines += [f"report:        {st['evaluate']['report']}", f"contact sheet: {st['review']['sheet']}"]
    if "scan" in st:
        lines.append(f"hard negatives (segmentation): {st['scan']['out_dir']}/hard_negatives.parquet")
    elif st["synth"]["segmentation_images"]["authentic"]:
        lines.append(f"segmentation:  quarry demo --config {result['work_dir']}/config.resolved.yaml task=segment "
                     "(its branch, on this world)")
    lines += [f"MLflow store:  {result['tracking_uri']}",
              f"browse it:     mlflow ui --backend-store-uri {result['tracking_uri']} "
              f"--default-artifact-root {db.rsplit('/', 1)[0]}/mlartifacts"]
    return lines


HEADLINE_COLUMNS = (("fp_rate", "lookalike-frame FP rate"), ("false_alarms_per_video", "false alarms / fp-or-clean video"),
                    ("event_recall", "event recall (tp videos)"), ("frame_recall", "work-zone frame recall"),
                    ("mcc", "frame MCC"), ("map50", "mAP50"), ("map50_95", "mAP50-95"))


def _model_label(name: str, evaluated: dict) -> str:
    """A detector's row name; one with another model's weights (scored once) says so."""
    twin = evaluated.get("same_weights_as")
    return name.replace("_", "-") + (f" (= {twin.replace('_', '-')}: the same weights)" if twin else "")


def _num(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def _loop_sections(st: dict) -> list[str]:
    """Steps 9-11: the search, the side-by-side evaluation and the promotion decision."""
    tu = st["tune"]
    best = tu["best"]
    lines = ["", f"9. tune [{_how(tu)}]: {len(tu['trials'])} trials on Ray Tune (objective: hard-negative FP rate on "
                 f"validation + penalty below 0.95 recall); best {best['trial']} objective {best['best_objective']:.3f} "
                 "with " + ", ".join(f"{k}={v:.3g}" for k, v in best["config"].items())
             + (f" -> {tu['registered']['name']} version {tu['registered']['version']} @{tu['registered']['alias']}"
                if "registered" in tu else "")]
    ev = st["evaluate"]
    lines += ["", f"10. evaluate [{_how(ev)}]: held-out frames and videos (other seeds than all training and mining data); "
                  f"report {ev['report']}", "",
              "   | model | " + " | ".join(label for _, label in HEADLINE_COLUMNS) + " |",
              "   |---|" + "---|" * len(HEADLINE_COLUMNS)]
    for name, row in ev["models"].items():
        lines.append(f"   | {_model_label(name, row)} | " + " | ".join(_num(row.get(k)) for k, _ in HEADLINE_COLUMNS) + " |")
    pr = st["promote"]
    lines += ["", f"11. promote [{_how(pr)}]: {pr['decision']}"
              + (f" — base model registered as version {pr['base_registered']['version']} @champion first"
                 if pr.get("base_registered") else "")]
    lines += [f"   - {'pass' if r['passed'] else 'FAIL'} {r['rule']}: {r['detail']}" for r in pr.get("rules", [])]
    return lines


def _round_lines(later: dict) -> list[str]:
    """A later round: what was mined and added, and the champion against its successor."""
    r, rs = later["round"], later["steps"]
    v, m, b, t = rs["synth"]["videos"], rs["mine"], rs["build"], rs["train"]["models"]["detector"]
    lines = ["", f"## Round {r} [{sum(rs[k]['step_seconds'] for k in rs):.0f} s]", "",
             f"- {v['tp'] + v['fp'] + v['clean']} fresh videos mined with the model in service (version "
             f"{later['champion']['version']}): {m['candidates']['candidates']} candidate frames, "
             f"{rs['review']['accepted']} accepted as hard negatives",
             f"- build: the previous round's set plus the new frames -> {b['samples']['train']} train / "
             f"{b['samples']['val']} val samples",
             f"- fine-tuned the model in service ({t['epochs_run']} epochs) -> version {t['registered']['version']} "
             "@challenger", "",
             "   | model | " + " | ".join(label for _, label in HEADLINE_COLUMNS) + " |",
             "   |---|" + "---|" * len(HEADLINE_COLUMNS)]
    for name, row in rs["evaluate"]["models"].items():
        lines.append(f"   | {name} | " + " | ".join(_num(row.get(k)) for k, _ in HEADLINE_COLUMNS) + " |")
    lines += ["", f"- promote: {rs['promote']['decision']}"]
    lines += [f"   - {'pass' if x['passed'] else 'FAIL'} {x['rule']}: {x['detail']}" for x in rs["promote"].get("rules", [])]
    return lines
