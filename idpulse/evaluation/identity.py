"""Identity judge: dlib's face recognition ResNet (128-D, same person below distance 0.6), as
shipped by the `face-recognition-models` package, run with `dlib-bin` (the `judges` extra).

The model files are loaded by path: that package's `__init__` imports `pkg_resources`, which may
be absent, so it is located with importlib without being imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise UserError("the identity judge needs the judges extra: pip install -e '.[judges]'")
    return Path(spec.origin).parent / "models"


class DlibIdentity:
    """`distance(a, b)` between faces (3, H, W) in [0, 1]; dlib calls < 0.6 the same person."""

    def __init__(self):
        try:
            import dlib
        except ImportError:
            raise UserError("the identity judge needs dlib: pip install -e '.[judges]'") from None
        d = models_dir()
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(d / "shape_predictor_5_face_landmarks.dat"))
        self.rec = dlib.face_recognition_model_v1(str(d / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, img: torch.Tensor) -> np.ndarray:
        """(3, H, W) in [0, 1] -> (128,). Small aligned crops are enlarged to 160 px first; where
        the detector finds no face, the whole (aligned) image is taken as the face box."""
        from PIL import Image

        from ..imageio import tensor_to_pil

        im = tensor_to_pil(img)
        if im.width < 160:
            im = im.resize((160, 160), Image.BICUBIC)
        a = np.asarray(im)
        dets = self.detector(a, 1)
        box = max(dets, key=lambda r: r.area()) if len(dets) else self.dlib.rectangle(0, 0, a.shape[1] - 1,
                                                                                       a.shape[0] - 1)
        return np.asarray(self.rec.compute_face_descriptor(a, self.shape(a, box)))

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> float:
        return float(np.linalg.norm(self.embed(a) - self.embed(b)))
