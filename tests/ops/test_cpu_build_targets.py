"""The compiled CPU ops build for the instruction sets of other machines, not
only this one's. Each width has its own code (16 lanes with AVX-512, 8 with
AVX2, 4 with SSE or NEON): a path that no longer compiles passes every test on
a machine of another kind, while on its own kind the install falls back to
the portable ops with only a warning. The 16-lane code also runs here, built
for AVX2 with its width imposed, under the CPU op and golden tests."""
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


def _has_avx2():
    from mmvim.ops.backends.cpu import _cpu_flags
    return 'avx2' in (_cpu_flags() or ())


# AVX-512 machines run code of their own: 16-lane tiles, 16 states a pass and
# no separate decays pass. Built for AVX2 with MMVIM_CPU_LANES=16 (each vector
# in two registers), that code passes the CPU op tests on a machine without
# AVX-512; only exp2's two AVX-512 instructions (rounding, scaling) are left
# to such a machine.
@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != 'x86_64' or not shutil.which('c++')
                    or not _has_avx2(), reason='an AVX2 build, run here')
def test_the_16_lane_kernels_pass_the_cpu_op_tests(tmp_path):
    build = subprocess.run(
        [sys.executable, 'setup.py', '-q', 'build_ext', '--build-temp',
         str(tmp_path / 'temp'), '--build-lib', str(tmp_path / 'lib')],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, MMVIM_CPU_MARCH='x86-64-v3', MMVIM_CPU_LANES='16',
                 MMVIM_WITH_CPU_OPS='1'))
    assert build.returncode == 0, build.stderr[-3000:]
    package = tmp_path / 'package' / 'mmvim'
    shutil.copytree(REPO / 'mmvim', package, ignore=shutil.ignore_patterns(
        '_cpu_ops*', '__pycache__'))
    for built in (tmp_path / 'lib' / 'mmvim' / 'ops').glob('_cpu_ops*'):
        shutil.copy(built, package / 'ops')
    env = dict(os.environ, PYTHONPATH=str(package.parent))
    loaded = subprocess.run(
        [sys.executable, '-c', 'import mmvim.ops.backends.cpu as cpu; '
         'print(cpu.__file__, cpu.build_record()["lanes"])'],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == [
        str(package / 'ops' / 'backends' / 'cpu.py'), '16']
    tests = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-n', '0', '-p',
         'no:cacheprovider', '-k', 'cpu or conv', *(
             str(REPO / 'tests' / 'ops' / name) for name in (
                 'test_cpu_scan.py', 'test_operators.py',
                 'test_golden_backends.py'))],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    summary = tests.stdout.strip().splitlines()[-1]
    assert tests.returncode == 0 and ' passed' in summary, tests.stdout[-3000:]
    assert int(summary.split(' passed')[0].split()[-1]) >= 100, summary
