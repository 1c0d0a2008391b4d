"""A generator's folders are replaced only when asked, and nothing else."""
import pytest

from mmvim.runtime.generated_data import clear_generated_folders


def test_non_empty_root_is_refused_then_cleared_of_its_folders_only(
        tmp_path):
    (tmp_path / 'images').mkdir()
    (tmp_path / 'images' / 'old.jpg').write_bytes(b'old')
    (tmp_path / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='replace its images/, labels/'):
        clear_generated_folders(tmp_path, ('images', 'labels'), False)
    assert (tmp_path / 'images' / 'old.jpg').is_file()

    assert clear_generated_folders(tmp_path, ('images', 'labels'),
                                   True) == tmp_path
    assert not (tmp_path / 'images').exists()
    assert (tmp_path / 'notes.txt').read_text() == 'keep me'


def test_missing_or_empty_root_is_ready(tmp_path):
    assert clear_generated_folders(str(tmp_path / 'new'), ('a', ),
                                   False) == tmp_path / 'new'
    assert clear_generated_folders(tmp_path, ('a', ), False) == tmp_path
