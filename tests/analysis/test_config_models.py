import pytest
import torch

from mmvim.analysis.config_models import synthetic_data_samples


def test_segmentation_samples_carry_class_zero_targets_on_request():
    pytest.importorskip('mmseg')
    with_targets = synthetic_data_samples('mmseg', 2, (8, 12), 'cpu',
                                          with_targets=True)
    assert len(with_targets) == 2
    assert with_targets[0].img_shape == (8, 12)
    target = with_targets[0].gt_sem_seg.data
    assert target.shape == (1, 8, 12) and not target.any()
    (plain, ) = synthetic_data_samples('mmseg', 1, (8, 12), 'cpu',
                                       with_targets=False)
    assert 'gt_sem_seg' not in plain


def test_detection_samples_have_boxes_inside_the_image():
    pytest.importorskip('mmdet')
    (sample, ) = synthetic_data_samples('mmdet', 1, (32, 48), 'cpu',
                                        with_targets=True)
    boxes = sample.gt_instances.bboxes
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    assert (boxes[:, 2] <= 48).all() and (boxes[:, 3] <= 32).all()
    assert torch.equal(sample.gt_instances.labels, torch.zeros(4).long())


def test_other_scopes_are_refused_by_name():
    with pytest.raises(ValueError, match="'mmpretrain' are not supported"):
        synthetic_data_samples('mmpretrain', 1, (8, 8), 'cpu', True)
