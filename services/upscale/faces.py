"""Faces in a photo, for crops that keep people whole: OpenCV's frontal-face Haar cascade.

opencv-python-headless 4.x ships the cascade files inside the package (`cv2.data.haarcascades`), so detection
runs offline with no model download; 5.x moved them out, hence the `<5` pin. The classifier is loaded on first
use (never at import) and shared; `detectMultiScale` runs under a lock because OpenCV does not promise that one
CascadeClassifier is safe to call from several threads at once. Detection runs on a grey copy at most
WORK_SIDE px on the long side: tens of milliseconds, deterministic.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

WORK_SIDE = 640
CASCADE = "haarcascade_frontalface_default.xml"
# A face much smaller than the largest one is a background face or a false hit: it must not steer the crop.
MIN_RELATIVE_SIDE = 0.25


@dataclass(frozen=True)
class Faces:
    boxes: list[tuple[float, float, float, float]]  # left, top, right, bottom in 0..1, largest first
    reason: str = ""  # why detection did not run ("" when it ran)


class _Detector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._classifier = None
        self._error = ""

    def _load(self):
        if self._classifier is None and not self._error:
            try:
                import cv2
            except ImportError:
                self._error = "face detection unavailable: opencv-python-headless is not installed"
                return None
            classifier = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
            if classifier.empty():
                self._error = f"face detection unavailable: OpenCV could not load {CASCADE}"
                return None
            self._cv2, self._classifier = cv2, classifier
        return self._classifier

    def detect(self, img: Image.Image) -> Faces:
        width, height = img.size
        scale = min(1.0, WORK_SIDE / max(width, height))
        grey = img.convert("L")
        if scale < 1.0:
            grey = grey.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)
        pixels = np.ascontiguousarray(np.asarray(grey, np.uint8))
        with self._lock:
            classifier = self._load()
            if classifier is None:
                return Faces([], self._error)
            pixels = self._cv2.equalizeHist(pixels)
            min_side = max(20, round(min(pixels.shape) * 0.05))
            found = classifier.detectMultiScale(pixels, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        w, h = pixels.shape[1], pixels.shape[0]
        boxes = sorted(((float(x) / w, float(y) / h, float(x + fw) / w, float(y + fh) / h)
                        for x, y, fw, fh in (found if len(found) else [])),
                       key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
        if boxes:
            largest = (boxes[0][2] - boxes[0][0]) * width
            boxes = [b for b in boxes if (b[2] - b[0]) * width >= MIN_RELATIVE_SIDE * largest]
        return Faces(boxes)


_DETECTOR = _Detector()


def detect(img: Image.Image) -> Faces:
    """Frontal faces in `img`, as fractions of its size, largest first."""
    return _DETECTOR.detect(img)
