"""Train a Vim segmentor (mmseg config) or detector (mmdet config).

The config's ``default_scope`` decides which library builds the model, data
and metrics; the command line follows mmseg's and mmdet's ``tools/train.py``.
"""
import torch

import mmvim  # noqa: F401  registers the Vim backbone, neck and optimizer
from mmvim.runtime import (RunSetupError, apply_checkpoint_plan,
                           check_checkpoint_loads, check_dataset_samples,
                           check_datasets_exist, check_pretrained_exist,
                           check_writable, checkpoint_layout,
                           plan_checkpoints)
from mmvim.runtime.command_line import (add_cfg_options, add_launcher_options,
                                        parse_launched_args, run_runner,
                                        tool_parser)

DATALOADERS = ('train_dataloader', 'val_dataloader')


def parse_args(argv=None):
    parser = tool_parser(__doc__.split('\n')[0])
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go (default: the config\'s '
        'work_dir, else work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='CHECKPOINT',
        help='continue an interrupted run: alone, from the newest checkpoint '
        'of the work dir that loads (a new run if there is none); with a '
        'path, from that checkpoint')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision (mmengine AmpOptimWrapper): bfloat16 on GPUs '
        'that support it, else float16 with dynamic loss scaling; GPU only')
    add_cfg_options(
        parser, 'train_cfg.max_iters=1000 '
        'model.backbone.init_cfg.checkpoint=PATH')
    add_launcher_options(parser, 'dist_train.sh')
    return parse_launched_args(parser, argv)


def enable_amp(cfg) -> None:
    """Switches the optimizer wrapper to mmengine's AmpOptimWrapper.

    bfloat16 keeps float32's exponent range, which matters for Vim: the
    reference reports NaN losses with float16 AMP. Older GPUs fall back to
    float16 with dynamic loss scaling.
    """
    if not torch.cuda.is_available():
        raise RunSetupError('--amp needs a CUDA GPU (mmengine\'s '
                            'AmpOptimWrapper); on CPU train without it.')
    wrapper = cfg.optim_wrapper
    if wrapper.get('type') == 'AmpOptimWrapper':
        return
    wrapper.type = 'AmpOptimWrapper'
    wrapper.setdefault('loss_scale', 'dynamic')
    wrapper.setdefault(
        'dtype',
        'bfloat16' if torch.cuda.is_bf16_supported() else 'float16')


def main():
    args = parse_args()

    def prepare(cfg) -> None:
        """Everything a user can get wrong, checked before anything is
        built: settings, folders, files, then every sample of the data."""
        if args.amp:
            enable_amp(cfg)
        check_writable(cfg.work_dir, '--work-dir')
        check_writable(checkpoint_layout(cfg).directory,
                       'the checkpoint folder (default_hooks.checkpoint.'
                       'out_dir)')
        check_datasets_exist(cfg, DATALOADERS)
        check_pretrained_exist(cfg)
        apply_checkpoint_plan(cfg, plan_checkpoints(cfg, args.resume))
        if cfg.get('load_from') and not cfg.resume:
            check_checkpoint_loads(cfg.load_from, 'load_from')
        check_dataset_samples(cfg, DATALOADERS)

    run_runner(args, prepare, 'train')


if __name__ == '__main__':
    main()
