"""posthorn-wazo-plugin: runs a wazo-webhookd service plugin, unchanged, as a Posthorn delivery
plugin. Install it beside the plugin (`pip install .` from this folder) and name it as the command
of a `[[services]]` entry: `command = ["posthorn-wazo-plugin", "example"]`."""

from setuptools import setup

setup(
    name="posthorn-wazo-plugin",
    version="0.1.0",
    description="Run wazo-webhookd service plugins as Posthorn delivery plugins",
    packages=["posthorn_wazo_plugin"],
    python_requires=">=3.8",
    entry_points={
        "console_scripts": ["posthorn-wazo-plugin = posthorn_wazo_plugin:main"],
    },
)
