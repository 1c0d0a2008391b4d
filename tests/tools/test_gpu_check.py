import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = 'tools/analysis_tools/gpu_check.sh'


def test_downloaded_wheels_stay_out_of_git_in_a_clone_without_git_info(
        tmp_path):
    """--download-wheels writes .whl/ into the checkout; git's exclude file
    keeps it from `git add -A`, also where the clone has no .git/info (the
    download itself, pip, is replaced by a stand-in that writes a wheel)."""
    repo = tmp_path / 'repo'
    (repo / SCRIPT).parent.mkdir(parents=True)
    shutil.copy(REPO / SCRIPT, repo / SCRIPT)
    git = ['git', '-C', str(repo), '-c', 'user.name=t', '-c', 'user.email=t@t']
    subprocess.run(['git', 'init', '-q', str(repo)], check=True)
    subprocess.run(git + ['add', '-A'], check=True)
    subprocess.run(git + ['commit', '-qm', 'script'], check=True)
    shutil.rmtree(repo / '.git' / 'info', ignore_errors=True)
    stand_in = tmp_path / 'bin' / 'python3'
    stand_in.parent.mkdir()
    stand_in.write_text('#!/bin/sh\nmkdir -p .whl && '
                        'touch .whl/mmengine-0.10.7-py3-none-any.whl\n')
    stand_in.chmod(0o755)
    env = {'PATH': f'{stand_in.parent}:/usr/bin:/bin', 'HOME': str(tmp_path)}
    for _ in range(2):  # a second download adds no second line
        subprocess.run(['bash', str(repo / SCRIPT), '--download-wheels'],
                       env=env, check=True)
    assert (repo / '.whl' / 'mmengine-0.10.7-py3-none-any.whl').exists()
    exclude = (repo / '.git' / 'info' / 'exclude').read_text().splitlines()
    assert exclude.count('/.whl/') == 1
    status = subprocess.run(git + ['status', '--porcelain'], check=True,
                            capture_output=True, text=True).stdout
    assert status == ''
