"""Package layout that pyproject.toml cannot express: the repository's ``avro/`` schemas and the sample
events of ``dev`` (``tests/data/sample_events.jsonl``) go into the wheel inside the ``streams`` package
(``streams/_avro``, ``streams/_data``), built from those folders, so there is no second copy to drift.
Everything else is in pyproject.toml; ``streams.bundled`` finds the files.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["streams", "streams.*"]), "streams._avro", "streams._data"],
    package_dir={"streams._avro": "avro", "streams._data": "tests/data"},
    package_data={
        "streams": ["py.typed"],
        "streams._avro": ["*.avsc"],
        "streams._data": ["sample_events.jsonl"],
    },
    # Only the listed files of tests/data, never the expected outputs beside them.
    include_package_data=False,
)
