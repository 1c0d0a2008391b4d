# tiny_upernet_vim.py plus a hook with which each process records a digest of
# its weights after training (tests/data/rank_digest_hook.py, found through
# PYTHONPATH).
_base_ = ['tiny_upernet_vim.py']
custom_imports = dict(
    imports=['mmvim', 'rank_digest_hook'], allow_failed_imports=False)
custom_hooks = [dict(type='RankDigestHook')]
