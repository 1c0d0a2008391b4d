import platform
import subprocess
import sys

import pytest

# Runs the portable scan forward and backward on Vim-Ti's widths at 1025
# tokens a few times and prints the minor page faults of the last runs:
# memory freed by one run is faulted in afresh by the next unless it is
# kept for reuse. Transparent huge pages are turned off for the process
# (prctl PR_SET_THP_DISABLE): where the kernel's setting is 'always', fresh
# mappings fault in 2 MiB at a time and the counts stop measuring memory
# (a CI machine counted 1191 faults by default against 8769 with reuse).
FAULTS_OF_REPEATED_SCANS = '''
import ctypes, resource, sys, torch
assert ctypes.CDLL(None).prctl(41, 1, 0, 0, 0) == 0
from mmvim import ops
from mmvim.runtime import reuse_freed_cpu_memory
if sys.argv[1] == 'reuse':
    assert reuse_freed_cpu_memory()
torch.set_num_threads(1)
length, channels, state = 1025, 768, 16
u, delta, z = (torch.randn(1, channels, length, requires_grad=True)
               for _ in range(3))
A = -torch.rand(channels, state)
B, C = (torch.randn(1, 2, state, length) for _ in range(2))
def run():
    with ops.use_backend('torch'):
        ops.selective_scan(u, delta, A, B, C, z=z,
                           delta_softplus=True).sum().backward()
run()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    run()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


def page_faults(mode):
    result = subprocess.run(
        [sys.executable, '-c', FAULTS_OF_REPEATED_SCANS, mode],
        capture_output=True, text=True, check=True)
    return int(result.stdout)


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='glibc only')
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    default, reuse = page_faults('default'), page_faults('reuse')
    assert reuse < default / 5, (default, reuse)
