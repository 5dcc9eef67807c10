import numpy as np
import pytest

from streams.vision.letterbox import canvas_shape, letterbox_batch


def test_large_images_shrink_to_fit_and_small_ones_stay_at_the_top_left_unscaled():
    tall = np.full((1280, 640, 3), 200, np.uint8)
    small = np.full((100, 50, 3), 77, np.uint8)
    batch, scales = letterbox_batch([tall, small], 640)
    assert batch.shape == (2, 640, 640, 3) and batch.dtype == np.uint8
    assert scales.tolist() == [0.5, 1.0]
    assert (batch[0, :, :320] == 200).all() and (batch[0, :, 320:] == 0).all()
    assert (batch[1, :100, :50] == 77).all() and batch[1].sum() == 77 * 100 * 50 * 3


def test_extreme_aspect_ratios_keep_at_least_one_pixel():
    batch, scales = letterbox_batch([np.full((40000, 16, 3), 9, np.uint8)], 640)
    assert scales[0] == pytest.approx(640 / 40000)
    assert (batch[0, :, :1] == 9).all()
    assert canvas_shape(40000, 16, 640, square=False) == (640, 32)


def test_an_image_canvas_is_the_image_shrunk_and_rounded_up_to_the_stride():
    assert canvas_shape(1200, 626, 640, square=False) == (640, 352)  # shrinks to 640 x 334
    assert canvas_shape(300, 500, 640, square=False) == (320, 512)  # stays
    assert canvas_shape(32, 64, 640, square=False) == (32, 64)  # already multiples
    assert canvas_shape(300, 500, 640, square=True) == (640, 640)
    portrait = np.full((1200, 626, 3), 1, np.uint8)
    batch, _ = letterbox_batch([portrait], 640, canvas_shape(1200, 626, 640, square=False))
    assert batch.shape == (1, 640, 352, 3) and (batch[0, :, :334] == 1).all() and (batch[0, :, 334:] == 0).all()


def test_an_image_larger_than_the_canvas_shape_is_refused():
    with pytest.raises(ValueError, match="does not fit a 320x512 canvas"):
        letterbox_batch([np.zeros((1200, 626, 3), np.uint8)], 640, (320, 512))


def test_canvas_must_suit_the_detector_stride():
    with pytest.raises(ValueError, match="multiple of 32"):
        letterbox_batch([np.zeros((10, 10, 3), np.uint8)], 630)
    with pytest.raises(ValueError, match="multiple of 32"):
        canvas_shape(10, 10, 630, square=False)
