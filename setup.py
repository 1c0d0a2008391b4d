from pathlib import Path

from setuptools import find_packages, setup


def read_requirements(name):
    lines = Path('requirements', name).read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines
            if ln.split('#')[0].strip()]


version = {}
exec(Path('mmvim/version.py').read_text(), version)

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
    },
    license='Apache License 2.0',
)
