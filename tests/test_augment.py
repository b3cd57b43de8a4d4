"""Street-like augmentation: shapes, repeatability, lost detail."""
import numpy as np

from maskwatch.convert.data.augment import augment, low_resolution
from maskwatch.edge.image import read_image


def test_augment_is_seeded_and_keeps_the_requested_size(sample_image):
    crop = np.ascontiguousarray(read_image(sample_image)[40:160, 60:180, ::-1])
    first = [augment(crop, 96, np.random.default_rng(3)) for _ in range(2)]
    assert first[0].shape == (96, 96, 3) and first[0].dtype == np.uint8
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(first[0], augment(crop, 96, np.random.default_rng(4)))


def test_low_resolution_loses_detail_and_keeps_the_shape():
    board = (np.indices((120, 120)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, 2)
    out = low_resolution(board, np.random.default_rng(0))
    assert out.shape == board.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - 127).mean() < np.abs(board.astype(int) - 127).mean() / 2
