"""Dataset readers: the shared CelebA/UTKFace crops, FairFace's CSV layout, and RecordIO."""

import io
import struct

import numpy as np
import pytest
import torch
from conftest import RECORDIO_MAGIC as MAGIC
from conftest import need_shared, pack, write_recordio
from PIL import Image

from idpulse.data import CELEBA_ATTRIBUTES, CelebA, FairFace, MS1MRecordIO, RecordIOReader, UTKFace
from idpulse.data.recordio import unpack
from idpulse.errors import UserError


def test_recordio_multi_chunk_round_trip(tmp_path):
    magic = struct.pack("<I", MAGIC)
    rng = np.random.default_rng(0)
    records = [(0, b"plain"), (1, b"abcd" + magic + b"efgh" + magic + b"xyz"),
               (2, magic + rng.bytes(1001)), (3, rng.bytes(37) + b"\0\0\0" + magic), (5, b"")]
    write_recordio(tmp_path / "t", records)
    raw = (tmp_path / "t.rec").read_bytes()
    assert struct.unpack_from("<I", raw, 4 + 8 + 8)[0] >> 29 == 1  # record 1 really is multi-chunk
    r = RecordIOReader(tmp_path / "t.rec")
    assert r.keys == [0, 1, 2, 3, 5]
    for k, data in reversed(records):
        assert r.read_idx(k) == data


def test_ms1m_layout(tmp_path):
    def jpeg(color):
        buf = io.BytesIO()
        Image.new("RGB", (112, 112), color).save(buf, "JPEG", quality=95)
        return buf.getvalue()

    # images are records 1..4 (identities 0, 0, 1, 1); records 5, 6 give each identity's range
    records = [(0, pack([5, 7]))] + [(i, pack(float(i > 2), jpeg((60 * i, 0, 0)))) for i in range(1, 5)]
    records += [(5, pack([1, 3])), (6, pack([3, 5]))]
    write_recordio(tmp_path / "train", records)
    (tmp_path / "property").write_text("2,112,112")
    ds = MS1MRecordIO(tmp_path)
    assert len(ds) == 4 and ds.num_classes == 2 and ds.identity_ranges == {0: (1, 3), 1: (3, 5)}
    item = ds[2]
    assert item["identity"] == 1 and item["image"].shape == (3, 112, 112)
    assert abs(item["image"][0].mean().item() - 180 / 255) < 0.02
    h, payload = unpack(pack([1.0, 2.0], b"xy"))
    assert h.flag == 2 and list(h.label) == [1.0, 2.0] and payload == b"xy"


def test_fairface_csv(tmp_path):
    (tmp_path / "train").mkdir()
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "train" / "1.jpg")
    (tmp_path / "fairface_label_train.csv").write_text(
        "file,age,gender,race,service_test\ntrain/1.jpg,20-29,Female,East Asian,True\n")
    ds = FairFace(tmp_path, size=16)
    assert len(ds) == 1 and ds[0]["race"].item() == 3 and ds[0]["gender"].item() == 1
    assert ds[0]["image"].shape == (3, 16, 16)


def test_shared_celeba():
    need_shared("data", "celeba", "images")
    train, test = CelebA(split="train", size=64), CelebA(split="test")
    assert len(train) > 10000 and len(test) > 10000
    assert not set(train.labels["identity"]) & set(test.labels["identity"])  # disjoint identities
    item = train[0]
    assert item["image"].shape == (3, 64, 64) and 0 <= item["image"].min() and item["image"].max() <= 1
    eyes_y = item["landmarks"][:2, 1]
    assert ((eyes_y > 20) & (eyes_y < 40)).all()  # eyes near y = 45 of 96, scaled to 64
    with_attrs = CelebA(split="train", require_attributes=True)
    a = with_attrs[0]["attributes"]
    assert a.shape == (40,) and set(a.tolist()) <= {0, 1} and len(CELEBA_ATTRIBUTES) == 40


def test_shared_utkface():
    need_shared("data", "utkface", "images")
    ds = UTKFace(size=32)
    assert len(ds) > 5000
    races = torch.tensor(ds.labels["race"])
    assert set(races.unique().tolist()) == {0, 1, 2, 3, 4}
    name = ds.files[0].name.split("_")
    assert ds[0]["age"].item() == int(name[0]) and ds[0]["race"].item() == int(name[2])


def test_framing_moves_each_landmark_onto_the_crop_template(tmp_path):
    """A tight crop (face zoomed 2x about the centre) is warped so that its landmarks, drawn as
    bright dots, land on the CelebA frame's template points."""
    from idpulse.align import crop_template
    from idpulse.data.faces import FaceDataset

    lm = (crop_template(96) - 48) * 2 + 48  # (5, 2) in the 96 px tight crop
    img = np.zeros((96, 96, 3), np.uint8)
    for x, y in lm.round().astype(int):
        img[y - 1:y + 2, x - 1:x + 2] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    ds = FaceDataset(files=[tmp_path / "a.png"], size=64, landmarks=[lm.astype(np.float32)], frame=True)
    item = ds[0]
    x = item["image"].mean(0)  # (64, 64)
    for (tx, ty) in crop_template(64):
        assert x[round(ty), round(tx)] > 0.3, (tx, ty)  # a dot where the template says
    assert x.mean() < 0.05  # and not everywhere
    assert torch.allclose(item["landmarks"], torch.from_numpy(crop_template(64)).float())
    assert torch.equal(ds.load_uint8(progress=False)[0], (item["image"] * 255).round().to(torch.uint8))
    plain = FaceDataset(files=[tmp_path / "a.png"], size=48, landmarks=[lm.astype(np.float32)])
    assert torch.allclose(plain[0]["landmarks"], torch.from_numpy(lm * 0.5).float())  # resized only


def test_missing_dataset_is_a_clear_error(tmp_path):
    from idpulse.errors import UserError

    with pytest.raises(UserError, match="not found"):
        CelebA(tmp_path)


def _fairface(tmp_path, with_landmarks=True):
    (tmp_path / "val").mkdir()
    rows = ["file,age,gender,race,service_test"]
    for i, race in enumerate(["Black", "Indian", "White"]):
        Image.new("RGB", (40, 40), (10 * i, 2, 3)).save(tmp_path / "val" / f"{i}.jpg")
        rows.append(f"val/{i}.jpg,20-29,Male,{race},True")
    (tmp_path / "fairface_label_val.csv").write_text("\n".join(rows) + "\n")
    if with_landmarks:
        from idpulse.align import crop_template
        from idpulse.data.landmarks import HEADER

        pts = ",".join(f"{v:.2f}" for v in crop_template(40).flatten())
        (tmp_path / "landmarks.csv").write_text(",".join(HEADER) + "\n" + "".join(
            f"val/{i}.jpg,30.0,{pts},mtcnn\n" for i in (0, 2)))  # no face found in val/1.jpg
    return tmp_path


def test_race_data_by_name(tmp_path):
    """The tables' held-out race faces: UTKFace's test split, or FairFace's val images that have
    landmarks (each with its 7-class label), framed into the generator's frame by them."""
    from idpulse.data import FAIRFACE_RACES, race_dataset

    ds, classes = race_dataset("fairface", _fairface(tmp_path), split="test", size=32, frame=True)
    assert classes == FAIRFACE_RACES and len(ds) == 2
    assert [FAIRFACE_RACES[r] for r in ds.labels["race"]] == ["Black", "White"]
    item = ds[1]
    assert item["image"].shape == (3, 32, 32) and not torch.isnan(item["landmarks"]).any()
    with pytest.raises(UserError, match="race_root"):
        race_dataset("fairface", None, split="train")
    with pytest.raises(UserError, match="unknown race data 'ffhq'"):
        race_dataset("ffhq", tmp_path, split="train")


def test_fairface_without_landmarks_says_how_to_make_them(tmp_path):
    from idpulse.data import race_dataset

    with pytest.raises(UserError, match="detect_landmarks.py fairface"):
        race_dataset("fairface", _fairface(tmp_path, with_landmarks=False), split="test")


def test_detect_landmarks_writes_what_the_reader_reads(tmp_path):
    """MTCNN on a real face (a shared CelebA crop, enlarged inside a loose FairFace-like frame) finds
    it where the crop's own landmarks say; a face-less image is left out; a second run resumes."""
    from idpulse.data import FairFace
    from idpulse.data.landmarks import dataset_files, detect_landmarks

    cel = CelebA(need_shared("data", "celeba").parent / "celeba", split="test")
    face = cel.load_pil(0).resize((192, 192), Image.BICUBIC)
    canvas = Image.new("RGB", (256, 256), (128, 128, 128))
    canvas.paste(face, (32, 32))
    (tmp_path / "train").mkdir()
    canvas.save(tmp_path / "train" / "1.jpg")
    Image.new("RGB", (256, 256), (90, 90, 90)).save(tmp_path / "train" / "2.jpg")
    (tmp_path / "fairface_label_train.csv").write_text(
        "file,age,gender,race,service_test\ntrain/1.jpg,20-29,Male,White,True\ntrain/2.jpg,3-9,Female,Black,True\n")
    names = dataset_files("fairface", tmp_path)
    assert detect_landmarks(tmp_path, names, progress=False) == (1, 1)
    ds = FairFace(tmp_path, split="train", need_landmarks=True)
    assert len(ds) == 1
    expect = cel.landmarks[0] * 2 + 32  # the crop's landmarks, enlarged 2x and moved by the paste
    assert np.abs(ds.landmarks[0] - expect).max() < 6  # px of 256: MTCNN against MTCNN at another scale
    assert detect_landmarks(tmp_path, names, progress=False) == (1, 1)  # resumed: the found one kept


def test_a_new_dataset_is_one_registration(tmp_path):
    """A dataset registered from outside: read by name, framed or not as registered, taken by GAN
    training's `data`, and by the tables' `data`; not by `race_data` (it has no race labels)."""
    from PIL import Image

    from idpulse.config import ConfigError, load_config
    from idpulse.data import DATASETS, ImageFolder, dataset, register_dataset
    from idpulse.evaluation.tables import TablesConfig
    from idpulse.training.gan import GanTrainConfig
    from idpulse.training.gan_data import load_training_images

    folder = tmp_path / "tiny" / "train"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (20, 20), (40 * i, 80, 120)).save(folder / f"{i}.png")
    register_dataset("tiny", lambda root, split, size, frame: ImageFolder(root / split, size=size), held_out="test",
                     title="Tiny")
    try:
        ds = dataset("tiny", split="train", size=8, data_root=tmp_path)
        assert len(ds) == 3 and ds[0]["image"].shape == (3, 8, 8)
        cfg = load_config(GanTrainConfig, None, ["--data=tiny", f"--data_root={tmp_path}", "--generator.resolution=8"])
        data = load_training_images(cfg)
        assert data.images.shape == (3, 3, 8, 8) and data.masks is None and data.counts == {"tiny": 3}
        assert load_config(TablesConfig, None, ["--data=tiny"]).data == "tiny"
        with pytest.raises(ConfigError, match="race_data"):
            load_config(TablesConfig, None, ["--race_data=tiny"])
    finally:
        DATASETS.pop("tiny", None)
