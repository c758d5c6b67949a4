"""A static HTML contact sheet of candidates: thumbnails with the detector's boxes drawn, their
scores, semantic state, category and decision; filters by category, decision and score band;
paged, so 10,000+ frames stay quick (the rows live in `data.js`, one page is drawn at a time).
Opens from disk (`file://`) with no server and nothing fetched from the network."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pandas as pd

from engine.storage import atomic_path, atomic_write_text

BOX_BGR = (0, 200, 255)


def write_thumbnail(image_path: str, boxes_json: str, target: Path, width_px: int) -> bool:
    """A JPEG of the snapshot, `width_px` wide, with its boxes (native pixels) drawn; False if unreadable."""
    bgr = cv2.imread(image_path)
    if bgr is None:
        return False
    scale = width_px / bgr.shape[1]
    thumb = cv2.resize(bgr, (width_px, max(1, round(bgr.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    for name, conf, x1, y1, x2, y2, *_ in json.loads(boxes_json or "[]"):
        p1, p2 = (round(x1 * scale), round(y1 * scale)), (round(x2 * scale), round(y2 * scale))
        cv2.rectangle(thumb, p1, p2, BOX_BGR, 1)
        cv2.putText(thumb, f"{name} {conf:.2f}", (p1[0], max(9, p1[1] - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, BOX_BGR, 1)
    ok, data = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return False
    with atomic_path(target) as tmp:
        tmp.write_bytes(data.tobytes())
    return True


def _value(v):
    return None if v is None or (isinstance(v, float) and v != v) else (v.item() if hasattr(v, "item") else v)


def write_sheet(table: pd.DataFrame, out_dir: Path, categories: list[str], page_size: int, thumb_px: int) -> dict:
    out_dir = Path(out_dir)
    rows, missing = [], []
    for row in table.itertuples(index=False):
        thumb = out_dir / "thumbs" / f"{row.candidate_id}.jpg"
        if not thumb.is_file() and not write_thumbnail(row.image, getattr(row, "boxes_json", "[]"), thumb, thumb_px):
            missing.append(row.image)
            continue
        rows.append({"id": row.candidate_id, "thumb": f"thumbs/{thumb.name}", "image": row.image,
                     **{c: _value(getattr(row, c, None)) for c in ("video_key", "frame", "video_label", "semantic_state",
                                                                   "yolo_score", "fused_score", "category", "decision")}})
    data = {"rows": rows, "categories": categories, "page_size": page_size}
    atomic_write_text(out_dir / "data.js", "window.QUARRY_SHEET = " + json.dumps(data) + ";\n")
    atomic_write_text(out_dir / "index.html", PAGE)
    return {"sheet": str(out_dir / "index.html"), "thumbnails": len(rows), "unreadable": missing}


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Quarry contact sheet</title>
<style>
body { font: 13px system-ui, sans-serif; margin: 12px; background: #f4f4f4; }
#bar { position: sticky; top: 0; background: #fff; padding: 8px; border-bottom: 1px solid #ccc; z-index: 1; }
#bar label { margin-right: 12px; }
#bar input[type=number] { width: 5em; }
#grid { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 10px; }
.card { background: #fff; border: 1px solid #ddd; padding: 4px; width: 196px; }
.card img { display: block; width: 192px; }
.card .meta { font-size: 11px; line-height: 1.35; }
.tag { display: inline-block; padding: 0 4px; border-radius: 3px; background: #e8e8ff; }
.accepted { background: #d9f5d9; } .rejected { background: #f8d7d7; }
</style></head>
<body>
<div id="bar">
  <label>category <select id="category"><option value="">all</option></select></label>
  <label>decision <select id="decision"><option value="">all</option><option>accepted</option>
    <option>rejected</option><option value="none">not decided</option></select></label>
  <label>fused score from <input id="low" type="number" step="0.05" min="0" max="1">
    to <input id="high" type="number" step="0.05" min="0" max="1"></label>
  <button id="prev">&lt; prev</button> <span id="page"></span> <button id="next">next &gt;</button>
  <span id="count"></span>
</div>
<div id="grid"></div>
<script src="data.js"></script>
<script>
(function () {
  const data = window.QUARRY_SHEET;
  const $ = (id) => document.getElementById(id);
  const select = $("category");
  for (const name of data.categories.concat(["none"])) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name === "none" ? "not categorised" : name;
    select.appendChild(option);
  }
  let page = 0;
  function filtered() {
    const category = $("category").value, decision = $("decision").value;
    const low = $("low").value === "" ? -Infinity : Number($("low").value);
    const high = $("high").value === "" ? Infinity : Number($("high").value);
    return data.rows.filter((r) =>
      (category === "" || (r.category || "none") === category) &&
      (decision === "" || (r.decision || "none") === decision) &&
      (r.fused_score === null || (r.fused_score >= low && r.fused_score <= high)));
  }
  function fmt(v) { return v === null || v === undefined ? "-" : (typeof v === "number" ? v.toFixed(3) : v); }
  function draw() {
    const rows = filtered();
    const pages = Math.max(1, Math.ceil(rows.length / data.page_size));
    page = Math.min(page, pages - 1);
    const grid = $("grid");
    grid.textContent = "";
    for (const r of rows.slice(page * data.page_size, (page + 1) * data.page_size)) {
      const card = document.createElement("div");
      card.className = "card" + (r.decision ? " " + r.decision : "");
      card.dataset.category = r.category || "none";
      card.dataset.fused = r.fused_score;
      const link = document.createElement("a");
      link.href = r.image;
      const img = document.createElement("img");
      img.src = r.thumb;
      img.alt = r.id;
      link.appendChild(img);
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = r.id + " | " + r.video_label + " | " + fmt(r.semantic_state) +
        " | yolo " + fmt(r.yolo_score) + " fused " + fmt(r.fused_score);
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = (r.category || "not categorised") + (r.decision ? ", " + r.decision : "");
      meta.appendChild(document.createElement("br"));
      meta.appendChild(tag);
      card.append(link, meta);
      grid.appendChild(card);
    }
    $("page").textContent = "page " + (page + 1) + " / " + pages;
    $("count").textContent = rows.length + " of " + data.rows.length + " candidates";
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  }
  for (const id of ["category", "decision", "low", "high"]) {
    $(id).addEventListener("input", () => { page = 0; draw(); });
  }
  $("prev").addEventListener("click", () => { page -= 1; draw(); });
  $("next").addEventListener("click", () => { page += 1; draw(); });
  draw();
})();
</script>
</body></html>
"""
