"""The compiled CPU ops build for the instruction sets of other machines, not
only this one's. Each width has its own code (16 lanes with AVX-512, 8 with
AVX2, 4 with SSE or NEON): a path that no longer compiles passes every test on
a machine of another kind, while on its own kind the install falls back to
the portable ops with only a warning."""
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# -march -> the instruction sets the build record must list.
X86_TARGETS = {
    'x86-64': [],  # SSE2: 4 lanes
    'x86-64-v3': ['avx2', 'fma'],  # 8 lanes
    'x86-64-v4': ['avx2', 'avx512f', 'fma'],  # 16 lanes
}


# A build takes ~30 s on two cores: with the end-to-end tests.
@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != 'x86_64' or not shutil.which('c++'),
                    reason='x86-64 targets, built with this machine\'s c++')
@pytest.mark.parametrize('march', sorted(X86_TARGETS))
def test_the_cpu_ops_build_for(march, tmp_path):
    result = subprocess.run(
        [sys.executable, 'setup.py', '-q', 'build_ext', '--build-temp',
         str(tmp_path / 'temp'), '--build-lib', str(tmp_path / 'lib')],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, MMVIM_CPU_MARCH=march, MMVIM_WITH_CPU_OPS='1'))
    assert result.returncode == 0, result.stderr[-3000:]
    library, = (tmp_path / 'lib' / 'mmvim' / 'ops').glob('_cpu_ops*.so')
    record = json.loads(Path(f'{library}.json').read_text())
    assert record['isa'] == X86_TARGETS[march]
