"""Evaluate a checkpoint of a Vim segmentor (mIoU) or detector (box/mask AP).

The config's ``default_scope`` (mmseg or mmdet) decides the library, as in
tools/train.py; the command line follows mmseg's and mmdet's ``test.py``.
"""
import os
import os.path as osp

import mmvim  # noqa: F401  registers the Vim backbone, neck and optimizer
from mmvim.runtime import (RunSetupError, check_checkpoint_loads,
                           check_dataset_samples, check_datasets_exist,
                           check_writable)
from mmvim.runtime.command_line import (add_cfg_options, add_launcher_options,
                                        parse_launched_args, run_runner,
                                        tool_parser)


def parse_args(argv=None):
    parser = tool_parser(
        __doc__.split('\n')[0], checkpoint_help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='where the metrics log goes (default as train.py)')
    parser.add_argument(
        '--out',
        help='also keep the predictions: segmentation writes one PNG per '
        'image into this directory, detection pickles them to this .pkl')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation with the config\'s tta_model and '
        'tta_pipeline (e.g. multi-scale + flip)')
    parser.add_argument(
        '--show', action='store_true', help='display each painted result')
    parser.add_argument(
        '--show-dir',
        help='save every test image with its prediction painted on it '
        '(segmentation: DIR/vis_data/vis_image/, detection: DIR/)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds --show waits')
    add_cfg_options(parser, 'test_dataloader.batch_size=2')
    add_launcher_options(parser, 'dist_test.sh')
    return parse_launched_args(parser, argv)


def is_detection(cfg) -> bool:
    return cfg.get('default_scope') == 'mmdet'


def enable_visualization(cfg, show: bool, show_dir, wait_time: float):
    """Turns on the library's visualization hook for every test image."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise RunSetupError('--show/--show-dir need default_hooks.'
                            'visualization in the config')
    hook.draw = True
    hook.show = show
    hook.wait_time = wait_time
    if show_dir is None:
        return
    # Absolute, so the mmdet hook does not nest it under the work dir.
    show_dir = osp.abspath(show_dir)
    check_output_free(show_dir, '--show-dir')
    if is_detection(cfg):
        hook.test_out_dir = show_dir
    else:
        hook.interval = 1
        cfg.visualizer.save_dir = show_dir


def enable_tta(cfg) -> None:
    """Wraps the model in the config's TTA model and feeds it the TTA
    pipeline, the way mmseg and mmdet do."""
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise RunSetupError('--tta needs tta_model and tta_pipeline in the '
                            'config')
    cfg.model = dict(**cfg.tta_model, module=cfg.model)
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:  # dataset wrappers
        dataset = dataset.dataset
    dataset.pipeline = cfg.tta_pipeline


def check_output_free(path: str, option: str) -> None:
    """Refuses an output path holding files: test.py never replaces
    files it did not write."""
    taken = osp.isfile(path) or (osp.isdir(path) and any(os.scandir(path)))
    if taken:
        raise RunSetupError(
            f'{option} {path} already holds results; test.py does not '
            'replace them. Choose another path or move them away.')


def keep_predictions(cfg, out: str) -> None:
    check_output_free(out, '--out')
    if is_detection(cfg):
        if not out.endswith(('.pkl', '.pickle')):
            raise RunSetupError('--out must name a .pkl file for detection')
        # mmdet's metric that pickles every prediction, next to the others
        metrics = cfg.test_evaluator
        if not isinstance(metrics, (list, tuple)):
            metrics = [metrics]
        cfg.test_evaluator = [
            *metrics, dict(type='DumpDetResults', out_file_path=out)
        ]
    else:
        cfg.test_evaluator.output_dir = out
        cfg.test_evaluator.keep_results = True


def main():
    """Returns the metrics, e.g. {'mIoU': ...}."""
    args = parse_args()

    def prepare(cfg) -> None:
        """Settings, folders and files checked before anything is built."""
        check_checkpoint_loads(args.checkpoint, 'checkpoint')
        check_writable(cfg.work_dir, '--work-dir')
        cfg.load_from = args.checkpoint
        if args.show or args.show_dir:
            enable_visualization(cfg, args.show, args.show_dir,
                                 args.wait_time)
        if args.tta:
            enable_tta(cfg)
        if args.out:
            keep_predictions(cfg, args.out)
        check_datasets_exist(cfg, ('test_dataloader', ))
        check_dataset_samples(cfg, ('test_dataloader', ))

    # The Runner loads the checkpoint through mmvim's CheckpointFormatHook:
    # weights that do not fit the config stop the test instead of scoring a
    # randomly initialised model.
    return run_runner(args, prepare, 'test')


if __name__ == '__main__':
    main()
