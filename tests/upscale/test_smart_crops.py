"""Smart crops keep people whole: on real photos with a face, every platform format's smart crop holds the whole
face box. The face is found here with a different OpenCV cascade (alt2) than the service uses (default), so the
check does not share the service's detection."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from services.upscale import social
from services.upscale.social import Catalogue, SocialRequest, crop_box, optimize
from shared.gen.imagemesh.v1 import upscale_service_pb2 as pb
from tests.upscale.conftest import MODELS_DIR, decode, png_message

CATALOGUE = Catalogue.load()
PHOTOS = ("astronaut.png", "grace_hopper.jpg")  # scikit-image's astronaut; matplotlib's Grace Hopper portrait
FORMATS = [(f.platform, f.id) for f in CATALOGUE.formats]


def photo(name: str) -> Image.Image:
    return Image.open(MODELS_DIR / "testdata" / name).convert("RGB")


def face_box(img: Image.Image) -> tuple[int, int, int, int]:
    classifier = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_alt2.xml")
    grey = cv2.equalizeHist(np.asarray(img.convert("L")))
    found = classifier.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40))
    assert len(found) == 1, found
    x, y, w, h = (int(v) for v in found[0])
    return x, y, x + w, y + h


FACES = {name: face_box(photo(name)) for name in PHOTOS}
# The smart crop's subject, found once per photo as optimize() finds it (the crop windows below are optimize's too).
SUBJECTS = {name: social._find_subject(photo(name), None, []) for name in PHOTOS}


@pytest.mark.parametrize("name", PHOTOS)
def test_the_smart_crop_subject_is_the_detected_face(name):
    subject = SUBJECTS[name]
    assert subject.source == "subject from 1 detected face (OpenCV Haar cascade): kept whole"
    width, height = photo(name).size
    keep = (subject.keep[0] * width, subject.keep[1] * height, subject.keep[2] * width, subject.keep[3] * height)
    # Both cascades agree on the face to within a few pixels.
    assert max(abs(a - b) for a, b in zip(keep, FACES[name], strict=True)) < 10


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("platform,format_id", FORMATS)
def test_smart_crop_holds_the_whole_face(name, platform, format_id):
    fmt = CATALOGUE.select([platform], [format_id])[0]
    width, height = photo(name).size
    left, top, right, bottom = crop_box(width, height, fmt, SUBJECTS[name])
    fl, ft, fr, fb = FACES[name]
    assert left <= fl and top <= ft and right >= fr and bottom >= fb, ((left, top, right, bottom), FACES[name])
    # The window has the format's aspect (to a pixel of rounding).
    assert abs((right - left) / (bottom - top) - fmt.width / fmt.height) < 0.01


def test_a_centre_crop_of_the_astronaut_cuts_her_face_where_the_smart_crop_does_not():
    """The reported bug: a 1.91:1 crop through the middle of the astronaut photo cuts the face at the mouth."""
    linkedin = CATALOGUE.select(["linkedin"], ["post"])[0]
    _, top, _, _ = crop_box(512, 512, linkedin, None)
    _, face_top, _, face_bottom = FACES["astronaut.png"]
    assert face_top < top < face_bottom


def test_a_face_too_tall_for_the_format_is_framed_whole_with_bars():
    """Grace Hopper's face is taller than a 4:1 strip of her portrait: the crop grows past the picture instead."""
    out = optimize(SocialRequest(photo("grace_hopper.jpg"), platforms=["linkedin"], formats=["cover"]), CATALOGUE)[0]
    left, _, right, _ = out.source_box
    assert left < 0 and right > 512
    assert any("framed whole with bars" in n for n in out.notes)
    pixels = np.asarray(out.image)
    assert pixels[:, :10].max() == 0 and pixels[:, -10:].max() == 0  # black bars on a JPEG format


async def test_the_service_crops_the_astronaut_for_linkedin_with_her_face_in_frame(upscale):
    reply = await upscale.call("OptimizeSocial", pb.OptimizeSocialRequest(
        image=png_message(photo("astronaut.png")), platforms=["linkedin"], formats=["post"]))
    item = reply.images[0]
    assert item.notes[0] == "subject from 1 detected face (OpenCV Haar cascade): kept whole"
    out = decode(item.image)
    assert out.size == (1200, 628)
    # The face is found again in the delivered crop, whole, and below the top safe margin.
    _, top, _, bottom = face_box(out)
    assert top >= 0.05 * 628 and bottom <= 628 * 0.95


def test_a_focal_point_outranks_the_faces():
    out = optimize(SocialRequest(photo("astronaut.png"), platforms=["linkedin"], formats=["post"], focal=(0.5, 1.0)),
                   CATALOGUE)[0]
    assert out.notes[0] == "focal point given by the caller"
    assert out.source_box[3] == 512
