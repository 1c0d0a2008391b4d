"""Train a Vim segmentor (mmseg config) or detector (mmdet config).

The config's ``default_scope`` decides which library builds the model, data
and metrics; the command line follows mmseg's and mmdet's ``tools/train.py``.
"""
import torch

import mmvim  # noqa: F401  registers the Vim backbone, neck and optimizer
from mmvim.runtime import (RunSetupError, apply_checkpoint_plan,
                           check_datasets_exist, check_pretrained_exist,
                           load_config, plan_checkpoints)
from mmvim.runtime.command_line import (add_cfg_options, add_launcher_options,
                                        parse_launched_args, run_runner,
                                        tool_parser)


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
        if args.amp:
            enable_amp(cfg)
        check_datasets_exist(cfg, ('train_dataloader', 'val_dataloader'))
        check_pretrained_exist(cfg)
        apply_checkpoint_plan(cfg, plan_checkpoints(cfg, args.resume))

    run_runner(
        load_config(args.config, args.cfg_options, args.launcher,
                    args.work_dir), prepare, 'train')


if __name__ == '__main__':
    main()
