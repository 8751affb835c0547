"""The allocator settings keep pysequoia's buffers in the process between messages."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import os, resource, sys
if sys.argv[1] == "tuned":
    from sealmail.core.allocator import keep_freed_memory
    assert keep_freed_memory()
import pysequoia
cert = pysequoia.Tsk.generate(
    "<a@example.test>", cipher_suite=pysequoia.CipherSuite.Cv25519
).extract_certificate()
data = os.urandom(140_000)
for _ in range(10):
    pysequoia.encrypt(data, [cert])
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    pysequoia.encrypt(data, [cert])
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / 50)
"""


def page_faults_per_message(mode: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True
    )
    return float(result.stdout)


def test_freed_buffers_stay_in_the_process():
    assert page_faults_per_message("tuned") < 5
    # Without the settings glibc hands the buffers back after every message.
    # This comparison fails if a future glibc stops doing that.
    assert page_faults_per_message("default") > 20
