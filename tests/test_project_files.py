"The project's front matter: the hand-written guides link to files that exist, and no tool can overwrite the README."
import configparser, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDES = ['README.md', 'GUIDE.md', 'DEVELOPERS.md', 'CHANGELOG.md']

def test_guides_link_to_files_that_exist():
    for name in GUIDES:
        text = (ROOT/name).read_text()
        for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', text):        # Markdown links and images
            if re.match(r'[a-z]+://', target): continue
            assert (ROOT/target).exists(), f"{name} links to {target}, which does not exist"

def test_readme_is_hand_written():
    cfg = configparser.ConfigParser(); cfg.read(ROOT/'settings.ini')
    nb = cfg['DEFAULT'].get('readme_nb', '')
    assert nb and not (ROOT/cfg['DEFAULT']['nbs_path']/nb).exists(), \
        f"settings.ini readme_nb = {nb!r}: nbdev_readme would render it over the hand-written README.md"

def test_licence_is_the_one_settings_names():
    cfg = configparser.ConfigParser(); cfg.read(ROOT/'settings.ini')
    assert cfg['DEFAULT']['license'] == 'apache2' and 'Apache License' in (ROOT/'LICENSE').read_text()[:200]
