"""An MLflow pyfunc model wrapping a YOLO best.pt: images in, boxes out.

A models-from-code file (MLflow 3): MLflow copies it into the model and runs
it at load time, so it imports nothing from this project.
Input: a DataFrame with a column `image` holding base64-encoded image files
(JPEG, PNG, ...). Output: one row per detected box, with the index of its
image, the corners in pixels, the score and the class. Param `conf` sets the
confidence threshold (default in the model config).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

INPUT_COLUMN = "image"
OUTPUT_COLUMNS = ["image", "x1", "y1", "x2", "y2", "score", "class_id", "class_name"]


class YoloDetector(PythonModel):
    def load_context(self, context: Any) -> None:
        from ultralytics import YOLO

        self.model = YOLO(context.artifacts["weights"])
        config = context.model_config or {}
        self.imgsz = int(config.get("imgsz", 640))
        self.conf = float(config.get("conf", 0.25))

    # model_input is typed pd.DataFrame, a type hint MLflow infers no schema from: the explicit SIGNATURE
    # (jobs/common/model.py) is the schema, and MLflow does not warn about an unsupported hint.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from PIL import Image
        from ultralytics.engine.results import Results

        conf = float((params or {}).get("conf", self.conf))
        images = [Image.open(io.BytesIO(base64.b64decode(value))).convert("RGB")
                  for value in pd.DataFrame(model_input)[INPUT_COLUMN]]
        rows = []
        for index, result in enumerate(self.model.predict(images, imgsz=self.imgsz, conf=conf, verbose=False)):
            # A Tensor (custom predictor) or Results without boxes: not a detection model.
            if not isinstance(result, Results) or result.boxes is None:
                raise TypeError(f"the model gave {type(result).__name__} without boxes: not a detection model")
            boxes, names = result.boxes, result.names
            for corners, score, cls in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True):
                rows.append([index, *corners, score, int(cls), names[int(cls)]])
        return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


mlflow.models.set_model(YoloDetector())
