"""The compiled CPU ops build for the instruction sets of other machines, not
only this one's. Each width has its own code (16 lanes with AVX-512, 8 with
AVX2, 4 with SSE or NEON): a path that no longer compiles passes every test on
a machine of another kind, while on its own kind the install falls back to
the portable ops with only a warning. The 16- and 4-lane code also runs here
under the CPU op and golden tests: the 16 lanes built for AVX2 with their
width imposed, the 4 lanes (NEON's width) built for SSE2."""
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmvim.ops.cpu_info import cpu_flags

REPO = Path(__file__).resolve().parents[2]

# -march -> the instruction sets the build record must list.
X86_TARGETS = {
    'x86-64': [],  # SSE2: 4 lanes
    'x86-64-v3': ['avx2', 'fma'],  # 8 lanes
    'x86-64-v4': ['avx2', 'avx512f', 'fma'],  # 16 lanes
}


def _build(tmp_path, march, lanes=''):
    """The library built for ``march`` (and ``lanes``) under tmp_path."""
    result = subprocess.run(
        [sys.executable, 'setup.py', '-q', 'build_ext', '--build-temp',
         str(tmp_path / 'temp'), '--build-lib', str(tmp_path / 'lib')],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, MMVIM_CPU_MARCH=march, MMVIM_CPU_LANES=lanes,
                 MMVIM_WITH_CPU_OPS='1'))
    assert result.returncode == 0, result.stderr[-3000:]
    library, = (tmp_path / 'lib' / 'mmvim' / 'ops').glob('_cpu_ops*.so')
    return library


X86 = platform.machine() == 'x86_64' and shutil.which('c++')


# A build takes ~30 s on two cores: with the end-to-end tests.
@pytest.mark.slow
@pytest.mark.skipif(not X86, reason='x86-64 targets, built with this '
                    'machine\'s c++')
@pytest.mark.parametrize('march', sorted(X86_TARGETS))
def test_the_cpu_ops_build_for(march, tmp_path):
    library = _build(tmp_path, march)
    record = json.loads(Path(f'{library}.json').read_text())
    assert record['isa'] == X86_TARGETS[march]


# AVX-512 machines run code of their own: 16-lane tiles, 16 states a pass and
# no separate decays pass; NEON machines (and SSE2 builds) 4-lane tiles. Built
# here (the 16 lanes for AVX2 with MMVIM_CPU_LANES=16, each vector in two
# registers), that code passes the CPU op tests on this machine; only exp2's
# two AVX-512 instructions (rounding, scaling) are left to such a machine.
@pytest.mark.slow
@pytest.mark.skipif(not X86, reason='x86-64 builds, run here')
@pytest.mark.parametrize('march, lanes', [('x86-64-v3', '16'),
                                          ('x86-64', '')])
def test_other_lane_widths_pass_the_cpu_op_tests(march, lanes, tmp_path):
    if not set(X86_TARGETS[march]) <= (cpu_flags() or set()):
        pytest.skip(f'this CPU cannot run a {march} build')
    library = _build(tmp_path, march, lanes)
    package = tmp_path / 'package' / 'mmvim'
    shutil.copytree(REPO / 'mmvim', package, ignore=shutil.ignore_patterns(
        '_cpu_ops*', '__pycache__'))
    for built in library.parent.glob('_cpu_ops*'):
        shutil.copy(built, package / 'ops')
    env = dict(os.environ, PYTHONPATH=str(package.parent))
    # The copy is what loads, built as asked.
    loaded = subprocess.run(
        [sys.executable, '-c', 'import mmvim.ops.backends.cpu as cpu; '
         'record = cpu.build_record(); '
         'print(cpu.__file__, record["isa"], record["lanes"])'],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert loaded.stdout.split(maxsplit=1) == [
        str(package / 'ops' / 'backends' / 'cpu.py'),
        f'{X86_TARGETS[march]} {int(lanes) if lanes else None}\n']
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
