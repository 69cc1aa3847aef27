"""nas.data.folders: image folders listed and checked, decoded once into memory (cached), read file by file, and
unreadable files counted rather than reported a line each."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from nas.data import folders
from nas.data.datasets import IMAGENET_MEAN, IMAGENET_STD, build_data
from nas.data.folders import FolderListing, ImageFiles, decode_image, take_unreadable
from nas.data.loaders import make_loader
from nas.data.tensors import InMemoryImages
from nas.errors import UserError
from nas.settings import DataConfig
from tests.image_folders import write_image_folder, write_unreadable

TWO_CLASSES = {"cat": (6, 2), "dog": (6, 2)}


def _folder(tmp_path, classes=TWO_CLASSES, **kw):
    return write_image_folder(tmp_path / "photos", classes, **kw)


def _config(root, **kw) -> DataConfig:
    return DataConfig(dataset="imagefolder", root=str(root), img_size=kw.pop("img_size", 32), **kw)


# ----------------------------------------------------------------------------------------------------- listing

def test_listing_reads_nested_files_in_natural_order(tmp_path):
    root = _folder(tmp_path)
    nested = root / "train" / "dog" / "more" / "7.png"
    nested.parent.mkdir()
    Image.new("RGB", (32, 32)).save(nested)
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    listing = FolderListing.read(root)
    assert listing.classes == ["cat", "dog"]
    assert len(listing.train_files) == 13 and str(nested) in listing.train_files  # txt left out
    assert listing.train_labels.tolist() == [0] * 6 + [1] * 7
    assert len(listing.test_files) == 4 and listing.test_labels.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("layout, fragments", [
    ({"cat": (3, 1), "dog": (0, 1)}, ("class folder 'dog' has no images", "remove it or add its images")),
    ({"cat": (3, 1), "dog": (0, 1), "emu": (0, 1)}, ("class folder 'dog' has no images", "nor do 1 more")),
    ({"cat": (3, 1)}, ("only one class ('cat')", "at least 2 class folders")),
    ({"cat": (0, 1), "dog": (0, 1)}, ("no images",)),
    ({"cat": (3, 0), "dog": (3, 0)}, ("val", "no images")),
])
def test_a_folder_that_cannot_be_learned_is_refused_in_one_line(tmp_path, layout, fragments):
    root = _folder(tmp_path, layout)
    with pytest.raises(UserError) as info:
        build_data(_config(root))
    message = str(info.value)
    assert "\n" not in message and str(root) in message
    for fragment in fragments:
        assert fragment in message, message


# --------------------------------------------------------------------------------------------------- in memory

def test_decode_keeps_a_square_image_at_its_side_and_fits_others(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    assert np.array_equal(decode_image(str(tmp_path / "a.png"), 32), pixels)
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 20:60] = 255  # the centre square is white, the sides black
    Image.fromarray(wide).save(tmp_path / "wide.png")
    fitted = decode_image(str(tmp_path / "wide.png"), 20)
    assert fitted.shape == (20, 20, 3) and fitted[:, 1:-1].min() == 255  # edge columns blend a little
    Image.fromarray(pixels[:, :, 0], mode="L").save(tmp_path / "grey.png")
    assert decode_image(str(tmp_path / "grey.png"), 32).shape == (32, 32, 3)


def test_small_folders_are_served_in_memory_with_the_file_splits(tmp_path):
    root = _folder(tmp_path)
    memory = build_data(_config(root))
    files = build_data(_config(root), in_memory=False)
    assert isinstance(memory.train, InMemoryImages) and isinstance(memory.test, InMemoryImages)
    assert not isinstance(files.train, InMemoryImages)
    for split in ("train", "val", "test"):  # the same images in the same splits
        assert np.array_equal(memory.indices[split], files.indices[split])
        assert len(getattr(memory, split)) == len(getattr(files, split))
    assert memory.train.mean == IMAGENET_MEAN and memory.train.std == IMAGENET_STD
    assert memory.train.augment is not None and memory.val.augment is None and memory.test.augment is None
    # a 32 px photo kept as it is: the in-memory test image is the file's pixels, normalised
    listing = FolderListing.read(root)
    x, y = memory.test[0]
    expected = torch.from_numpy(np.array(Image.open(listing.test_files[0]))).permute(2, 0, 1).float() / 255
    expected = (expected - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(x, expected)
    assert y == int(listing.test_labels[0])
    batch, labels = next(iter(make_loader(memory.train, 4, shuffle=True, seed=0)))
    assert batch.shape == (4, 3, 32, 32) and labels.shape == (4,)


def test_decoded_images_come_from_the_cache_until_a_file_changes(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    monkeypatch.setenv("MIXERNAS_CACHE", str(tmp_path / "cache"))
    first = build_data(_config(root))
    cached = list((tmp_path / "cache" / "images").glob("*.npz"))
    assert len(cached) == 1 and "32px" in cached[0].name

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folders, "_decode_all", no_decoding)
    again = build_data(_config(root))
    assert torch.equal(again.train.images, first.train.images)
    # another side, or a changed file, is another cache entry
    changed = FolderListing.read(root).train_files[0]
    Image.new("RGB", (32, 32), (255, 0, 0)).save(changed)
    os.utime(changed, ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        build_data(_config(root))
    with pytest.raises(AssertionError, match="decoded again"):
        build_data(_config(root, img_size=16))


def test_a_broken_cache_file_is_decoded_again(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    monkeypatch.setenv("MIXERNAS_CACHE", str(tmp_path / "cache"))
    first = build_data(_config(root))
    cache, = (tmp_path / "cache" / "images").glob("*.npz")
    cache.write_bytes(b"half a file")
    assert torch.equal(build_data(_config(root)).train.images, first.train.images)


def test_unreadable_files_are_left_out_and_reported_once(tmp_path, capsys):
    root = _folder(tmp_path)
    for i in range(3):
        write_unreadable(root / "train" / "cat" / f"broken{i}.jpg")
    write_unreadable(root / "val" / "dog" / "broken.png")
    bundle = build_data(_config(root))
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "could not be read" in line]
    assert len(lines) == 1 and "4 of 20 image files" in lines[0] and "broken" in lines[0]
    assert len(bundle.train) + len(bundle.val) == 12 and len(bundle.test) == 4
    build_data(_config(root))  # the same process builds the data again: nothing more to say
    assert "could not be read" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ file by file

def test_image_files_serve_the_next_readable_file_and_count_across_workers(tmp_path):
    root = _folder(tmp_path, {"cat": (4, 1), "dog": (4, 1)})
    listing = FolderListing.read(root)
    broken = write_unreadable(root / "train" / "cat" / "0001.png")  # replaces a listed file
    assert str(broken) in listing.train_files

    def to_tensor(img):
        return torch.from_numpy(np.array(img)).permute(2, 0, 1).float()

    dataset = ImageFiles(listing.train_files, listing.train_labels, to_tensor)
    position = listing.train_files.index(str(broken))
    x, y = dataset[position]
    torch.testing.assert_close(x, dataset[position + 1][0])  # the next file, with its own label
    assert y == int(listing.train_labels[position + 1])
    assert take_unreadable(dataset) == 1 and take_unreadable(dataset) == 0
    loader = make_loader(dataset, 2, shuffle=True, seed=0, num_workers=2)  # real worker processes
    assert sum(len(y) for _, y in loader) == 8
    assert take_unreadable(dataset) == 1


def test_a_folder_of_nothing_readable_is_a_user_error(tmp_path):
    files = [str(write_unreadable(tmp_path / f"{i}.png")) for i in range(2)]
    with pytest.raises(UserError, match="none of the 2 image files could be read"):
        ImageFiles(files, np.zeros(2), lambda img: img)[0]
