# STAND-IN for ansible-test's pip bootstrap script (get-pip.py), which ansible-test downloads from
# ci-files.testing.ansible.com: that host is not reachable from our CI. tests/run.sh puts this file
# where ansible-test caches the download. Like get-pip.py it installs pip into the interpreter that
# runs it, here from the wheel bundled with Python's ensurepip, then installs the requested
# packages (for example pip==24.2) from PyPI, which is reachable.
from __future__ import annotations

import subprocess
import sys

# get-pip.py options that pip itself does not know.
OWN_OPTIONS = {'--no-setuptools', '--no-wheel'}

# In a child process: ensurepip blanks pip's configuration (PIP_CONFIG_FILE=/dev/null) in the
# environment of the process that imports it, and the install below needs the machine's pip.conf.
rc = subprocess.call([sys.executable, '-m', 'ensurepip', '--upgrade'])
if rc:
    sys.exit(rc)
args = [a for a in sys.argv[1:] if a not in OWN_OPTIONS]
sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install'] + args))
