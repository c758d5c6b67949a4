"""MLflow pyfunc wrappers around Quarry's model files, so a registered version loads with
`mlflow.pyfunc.load_model("models:/<name>@champion")` in a fresh process and predicts.

Detection: the artifact is an Ultralytics `.pt` (which users also export and deploy with their
own tools); input a DataFrame with an `image` column of paths (or a list of paths); output
one row per box: image index, class, class_id, conf, x1, y1, x2, y2 (pixels).
Segmentation: an smp state_dict plus its architecture; input the same; output per image the
share of pixels above the threshold and the maximum probability.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd


def _paths(model_input) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        return [str(p) for p in model_input["image"]]
    return [str(p) for p in model_input]


class DetectorModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from engine.offline import configure_ultralytics

        configure_ultralytics()
        from ultralytics import YOLO

        self.model = YOLO(context.artifacts["weights"], task="detect")
        self.settings = context.model_config or {}

    def predict(self, context, model_input, params=None):
        params = {**self.settings, **(params or {})}
        rows = []
        results = self.model.predict(_paths(model_input), imgsz=int(params.get("imgsz", 256)),
                                     conf=float(params.get("conf", 0.25)), verbose=False, device="cpu")
        for i, result in enumerate(results):
            boxes = result.boxes
            for c, s, b in zip(boxes.cls.tolist(), boxes.conf.tolist(), boxes.xyxy.tolist()):
                rows.append({"image": i, "class": self.model.names[int(c)], "class_id": int(c), "conf": s,
                             "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]})
        return pd.DataFrame(rows, columns=["image", "class", "class_id", "conf", "x1", "y1", "x2", "y2"])


class SegmenterModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from engine.models.segmenter import SegmenterSpec, build_segmenter

        self.settings = context.model_config or {}
        self.model = build_segmenter(SegmenterSpec(arch=self.settings["arch"], encoder=self.settings["encoder"],
                                                   checkpoint=context.artifacts["weights"]))

    def predict(self, context, model_input, params=None):
        from engine.segment.predict import predict_probabilities, read_rgb

        params = {**self.settings, **(params or {})}
        threshold = float(params.get("threshold", 0.5))
        rows = []
        for i, path in enumerate(_paths(model_input)):
            prob = predict_probabilities(self.model, [read_rgb(path)], int(params.get("imgsz", 128)))[0]
            rows.append({"image": i, "forged_share": float((prob > threshold).mean()), "max_prob": float(prob.max())})
        return pd.DataFrame(rows, columns=["image", "forged_share", "max_prob"])
