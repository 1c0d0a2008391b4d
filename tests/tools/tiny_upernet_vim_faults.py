# The crash tests' config: tiny_upernet_vim_rank_digest.py, 8 iterations with
# a checkpoint after each, and nothing that draws random numbers in a
# training step (dropout 0; drop_path is 0 already), so that a resumed run
# can be compared bit for bit with an uninterrupted one. RandomFlip stays:
# mmengine replays the data pipeline of the skipped iterations on resume.
# tests/tools/fault_injection.py (found through PYTHONPATH) kills the
# process where MMVIM_TEST_FAULT says.
_base_ = ['../data/configs/tiny_upernet_vim_rank_digest.py']
custom_imports = dict(
    imports=['mmvim', 'rank_digest_hook', 'fault_injection'],
    allow_failed_imports=False)
custom_hooks = [dict(type='RankDigestHook'), dict(type='FaultInjectionHook')]
model = dict(
    decode_head=dict(dropout_ratio=0.), auxiliary_head=dict(dropout_ratio=0.))
randomness = dict(seed=0)
train_cfg = dict(max_iters=8, val_interval=8)
default_hooks = dict(checkpoint=dict(interval=1))
