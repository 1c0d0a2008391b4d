"""mmvim's install: the Python package and, where it can be built, the
compiled CPU selective scan (mmvim.ops._cpu_scan).

The extension is compiled against the torch already installed (so install
with --no-build-isolation) for the installing machine's instruction set
(-march=native; MMVIM_CPU_MARCH=x86-64-v3, say, for a build that runs on
other machines). MMVIM_WITH_CPU_OPS=0 skips it, =1 makes a failed build an
error; unset, a failed build warns and mmvim runs on its portable ops.
"""
import os
import platform
from pathlib import Path

from setuptools import find_packages, setup


def read_requirements(name):
    lines = Path('requirements', name).read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines
            if ln.split('#')[0].strip()]


def cpu_ops_build():
    """(ext_modules, cmdclass) for the compiled CPU scan, or empty ones."""
    choice = os.environ.get('MMVIM_WITH_CPU_OPS', '').strip()
    if choice == '0':
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        if choice == '1':
            raise
        print('mmvim: torch is not importable while building, so the '
              'compiled CPU ops are skipped (install torch first, then mmvim '
              'with --no-build-isolation).')
        return [], {}

    class OptionalBuildExtension(BuildExtension):
        """A failed compile warns instead of failing the install, unless
        MMVIM_WITH_CPU_OPS=1."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as error:  # noqa: BLE001 - compiler errors vary
                if choice == '1':
                    raise
                print(f'mmvim: WARNING: the compiled CPU ops failed to build '
                      f'({error}); mmvim will run on its portable ops. '
                      'Set MMVIM_WITH_CPU_OPS=1 to see the failure as an '
                      'error.')

    arm = platform.machine().lower() in ('aarch64', 'arm64')
    march = os.environ.get('MMVIM_CPU_MARCH', 'native')
    extension = CppExtension(
        'mmvim.ops._cpu_scan', sorted(
            str(path) for path in Path('mmvim/ops/csrc').glob('*.cpp')),
        depends=sorted(
            str(path) for path in Path('mmvim/ops/csrc').glob('*.h')),
        extra_compile_args=[
            '-O3', ('-mcpu=' if arm else '-march=') + march, '-fopenmp',
            '-fno-math-errno', '-fno-trapping-math', '-ffp-contract=fast'
        ],
        extra_link_args=['-fopenmp'])
    return [extension], {'build_ext': OptionalBuildExtension}


version = {}
exec(Path('mmvim/version.py').read_text(), version)
ext_modules, cmdclass = cpu_ops_build()

setup(
    name='mmvim',
    version=version['__version__'],
    description='Vision Mamba (Vim) backbones for MMSegmentation and '
    'MMDetection',
    long_description=Path('README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmvim', 'mmvim.*']),
    python_requires='>=3.8',
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'cuda': read_requirements('cuda.txt'),
        'tests': read_requirements('tests.txt'),
        'mm': read_requirements('mminstall.txt'),
        'deploy': read_requirements('deploy.txt'),
        'triton': read_requirements('triton.txt'),
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    license='Apache License 2.0',
)
