"""Package metadata comes from settings.ini (nbdev 2 convention)."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).with_name("settings.ini"))
cfg = cfg["DEFAULT"]
readme = Path(__file__).with_name("README.md")

setuptools.setup(
    name=cfg["repo"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=readme.read_text() if readme.exists() else "",
    long_description_content_type="text/markdown",
    author=cfg["author"],
    license="Apache-2.0",
    python_requires=">=" + cfg["min_python"],
    packages=setuptools.find_packages(include=["clinical_bert", "clinical_bert.*"]),
    include_package_data=True,
    package_data={"clinical_bert": ["assets/**/*", "assets/*"]},
    install_requires=cfg["requirements"].split(),
    extras_require={"dev": cfg["dev_requirements"].split()},
    entry_points={"console_scripts": cfg["console_scripts"].split(),
                  "nbdev": ["clinical_bert=clinical_bert._modidx:d"]},
    zip_safe=False,
)
