# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the homelab.gpu.nvidia_driver role should do on a host. Private to this collection: no API promise.

Plain functions that take data (the nvidia_smi_info result, preflight_host, the role's options and a few
read-only observations) and return data, so that every decision of the role has a unit test
(tests/unit/plugins/module_utils/test__driver_plan.py). The filter homelab.gpu.nvidia_driver_plan exposes
``plan()`` to the role.
"""

from __future__ import annotations

import re

ACTION_NONE = 'none'
ACTION_INSTALL = 'install'
ACTION_REBOOT = 'reboot'
ACTION_REFUSE = 'refuse'

# The branch each supported Debian release ships in non-free (nvidia-driver); the branch pin is Ubuntu's.
DEBIAN_BRANCHES = {'12': 535}
DEBIAN_CODENAMES = {'12': 'bookworm'}
DEBIAN_COMPONENTS = ('non-free', 'non-free-firmware')
UBUNTU_VERSIONS = ('22.04', '24.04')

# Where DKMS keeps the key it signs modules with (dkms 3.x on Debian 12 and Ubuntu 24.04); Ubuntu 22.04's
# dkms 2.8 signs with the key of shim-signed's update-secureboot-policy.
DKMS_MOK_CERTIFICATES = {
    ('Debian', '12'): '/var/lib/dkms/mok.pub',
    ('Ubuntu', '22.04'): '/var/lib/shim-signed/mok/MOK.der',
    ('Ubuntu', '24.04'): '/var/lib/dkms/mok.pub',
}
DKMS_MOK_KEYS = {
    '/var/lib/dkms/mok.pub': '/var/lib/dkms/mok.key',
    '/var/lib/shim-signed/mok/MOK.der': '/var/lib/shim-signed/mok/MOK.priv',
}

PROBE_OK = 'ok'
PROBE_NOT_INSTALLED = 'not_installed'
PROBE_NO_DEVICES = 'no_devices'
PROBE_DRIVER_NOT_LOADED = 'driver_not_loaded'
PROBE_MISMATCH = 'driver_library_mismatch'
PROBE_ERROR = 'error'

_KERNEL_RE = re.compile(r'^\d+\.\d+\.\d+-\d+-(?P<flavour>[a-z][a-z0-9-]*)$')

# The format of the dpkg-query call whose output hold_plan() reads (one line per package, tab-separated).
DPKG_HOLD_FORMAT = '${db:Status-Abbrev}\t${Package}\t${Version}\t${source:Package}\n'
# Source packages of the NVIDIA driver: Ubuntu's nvidia-graphics-drivers-<branch>[-server] (userspace, DKMS
# source, firmware), Debian's nvidia-graphics-drivers[-tesla[-<branch>]] and nvidia-open-gpu-kernel-modules.
_DRIVER_SOURCE_RE = re.compile(
    r'nvidia-(?:graphics-drivers|open-gpu-kernel-modules)(?:-tesla)?(?:-(?P<branch>\d+))?(?:-server)?')
# Canonical's precompiled modules of one branch for one kernel: linux-(modules|objects)-nvidia-<branch>...-<kernel>.
_MODULE_PACKAGE_RE = re.compile(r'linux-(?:modules|objects)-nvidia-(?P<branch>\d+)(?:-server)?(?:-open)?-(?P<kernel>.+)')


class PlanError(ValueError):
    """Inputs the plan cannot work with (a programming or configuration error, not a host state)."""


def branch_of(driver_version):
    """580 from '580.159.04'; None when there is no version or it does not start with a number."""
    if not driver_version:
        return None
    match = re.match(r'^\s*(\d+)', str(driver_version))
    return int(match.group(1)) if match else None


def kernel_flavour(kernel):
    """The flavour of an Ubuntu kernel release: 'generic' from '6.8.0-45-generic', 'aws' from '6.8.0-1015-aws'.

    None for a kernel that is not built the Ubuntu way (a self-built or vendor kernel), for which Canonical has
    no precompiled NVIDIA modules.
    """
    match = _KERNEL_RE.match(str(kernel or '').strip())
    return match.group('flavour') if match else None


def ubuntu_suffix(server, open_module):
    """'', '-server', '-open' or '-server-open', as in Canonical's package names."""
    return ('-server' if server else '') + ('-open' if open_module else '')


def ubuntu_precompiled_names(branch, server, open_module, kernel, distribution_version, installed=()):
    """Canonical's signed precompiled module packages for the running kernel.

    Returns (exact, meta, lookup): ``linux-modules-nvidia-<branch>[-server][-open]-<uname -r>`` (what makes the
    running kernel work); the metapackage that follows later kernels of the same flavour: the HWE one
    (``...-generic-hwe-24.04``) when the host runs the HWE kernel series (its ``linux-image-generic-hwe-<version>``
    is in ``installed``), else ``...-<flavour>`` (``...-generic``); and the names to ask APT about (the exact one
    and both metapackages, so that one look-up serves whatever ``installed`` says). (None, None, []) for a kernel
    that is not built the Ubuntu way.
    """
    flavour = kernel_flavour(kernel)
    if flavour is None:
        return None, None, []
    base = 'linux-modules-nvidia-%s%s' % (branch, ubuntu_suffix(server, open_module))
    hwe = '%s-hwe-%s' % (flavour, distribution_version)
    exact = '%s-%s' % (base, kernel)
    hwe_meta = '%s-%s' % (base, hwe)
    ga_meta = '%s-%s' % (base, flavour)
    meta = hwe_meta if 'linux-image-%s' % hwe in set(installed or ()) else ga_meta
    return exact, meta, [exact, hwe_meta, ga_meta]


def parse_apt_policy(text):
    """``apt-cache policy PKG...`` output -> {package: candidate version or None}.

    Packages apt does not know at all are not printed by apt-cache and are absent from the result.
    """
    result = {}
    current = None
    for line in (text or '').splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(':'):
            current = line.rstrip()[:-1].strip()
            result[current] = None
            continue
        stripped = line.strip()
        if current is not None and stripped.startswith('Candidate:'):
            candidate = stripped.split(':', 1)[1].strip()
            result[current] = None if candidate in ('', '(none)') else candidate
    return result


def parse_index_targets(text):
    """``apt-get indextargets --no-release-info --format '$(RELEASE) $(COMPONENT)'`` -> set of (suite, component)."""
    targets = set()
    for line in (text or '').splitlines():
        parts = line.split()
        if len(parts) == 2:
            targets.add((parts[0], parts[1]))
    return targets


def missing_debian_components(index_targets_text, codename):
    """The Debian components the nvidia driver needs that the host's APT sources lack, per source.

    Returns {'main': [...], 'security': [...]}: components missing for ``<codename>`` or ``<codename>-updates``
    (the mirror) and for ``<codename>-security``, in the order of DEBIAN_COMPONENTS; empty lists when the
    sources already have them.
    """
    targets = parse_index_targets(index_targets_text)
    groups = {'main': (codename, codename + '-updates'), 'security': (codename + '-security',)}
    return dict(
        (group, [c for c in DEBIAN_COMPONENTS if any((suite, c) not in targets for suite in suites)])
        for group, suites in groups.items())


def _version_key(distribution, distribution_version):
    version = str(distribution_version or '')
    if distribution == 'Debian':
        version = version.split('.', maxsplit=1)[0]
    return distribution, version


def secure_boot_message(distribution, distribution_version, packages, mok_certificate):
    """What to do when Secure Boot is on and the module would be built by DKMS (unsigned for the firmware)."""
    mok_key = DKMS_MOK_KEYS.get(mok_certificate, mok_certificate.rsplit('.', 1)[0] + '.key')
    return (
        'Secure Boot is on, and the NVIDIA kernel module for %s %s would be built by DKMS (%s): the firmware does '
        'not trust it, so it would not load and nvidia-smi would fail after the reboot. Nothing was installed. '
        'Do one of these, then re-run: '
        '(1) Enroll the DKMS signing key, as root on the host: if %s does not exist yet, create it with '
        '"openssl req -new -x509 -nodes -days 36500 -subj \'/CN=DKMS module signing key\' -newkey rsa:2048 '
        '-keyout %s -outform DER -out %s"; run "mokutil --import %s" and choose a one-time password; reboot and, '
        'at the console (not over SSH), in the blue MOK manager choose "Enroll MOK", "Continue", "Yes", type the '
        'password and reboot. The role checks the enrolment with "mokutil --test-key %s" and then installs. '
        '(2) Or disable Secure Boot in the firmware (UEFI) setup.'
        % (distribution, distribution_version, ', '.join(packages), mok_certificate, mok_key, mok_certificate,
           mok_certificate, mok_certificate))


def supported_releases():
    """'Ubuntu 22.04 and 24.04, Debian 12': the releases the role installs the driver on."""
    return 'Ubuntu %s, Debian %s' % (' and '.join(UBUNTU_VERSIONS), ' and '.join(sorted(DEBIAN_BRANCHES)))


def unsupported_message(unsupported, reason, acceptable_branches, min_branch):
    """The refusal for a host that preflight let through (preflight_fail_unsupported=false) but that needs an install.

    unsupported: what is unsupported, as '<release> is not ...' (see plan()).
    """
    wanted = ('of one of the branches %s' % ', '.join(str(b) for b in acceptable_branches)
              if acceptable_branches else 'of branch %s or newer' % min_branch)
    return ('%s, and %s. '
            'preflight_fail_unsupported=false lets the roles run on it, but the role only keeps a working driver '
            'there. Install an NVIDIA driver %s yourself (your distribution\'s packages), reboot and re-run: the '
            'role then finds it working and leaves it alone. Or skip the role on this host (provision_driver: '
            'false in homelab.gpu.provision). Nothing was changed.' % (unsupported, reason, wanted))


def plan(probe, distribution, distribution_version, kernel=None, secure_boot=None, branch='580', server=False,
         open_module=True, min_branch=535, acceptable_branches=None, reboot=True, connection_local=False,
         nouveau_loaded=False, precompiled=None, prefer_precompiled=True, installed=None, mok_enrolled=False,
         extra_packages=None, supported=None):
    """Decide what the nvidia_driver role does.

    probe: the result of homelab.gpu.nvidia_smi_info (state, driver_version, message).
    distribution, distribution_version, kernel, secure_boot: from preflight_host (secure_boot True, False or
    None for unknown).
    branch, server, open_module, min_branch, acceptable_branches, reboot, prefer_precompiled, extra_packages:
    the role's options.
    connection_local: Ansible runs on the host itself (it must not reboot it).
    nouveau_loaded: nouveau is in /proc/modules.
    precompiled: on Ubuntu, {package: candidate or None} from parse_apt_policy for the names of
    ubuntu_precompiled_names(); None when not looked up yet (the role looks it up only when it installs).
    installed: names of installed packages that matter (linux-image-*-hwe-*), for the metapackage choice.
    mok_enrolled: the DKMS signing key is enrolled (mokutil --test-key), so DKMS modules load under Secure Boot.
    supported: preflight_host.supported; False makes the role keep a working driver only, as on a release it has no
    packages for.

    Returns a dict: action (none, install, reboot, refuse), message, current_branch, acceptable, install,
    packages, kernel_module (precompiled, dkms or None), module_signed, reboot_required, reboot_reasons,
    reboot_now, warnings, blacklist_nouveau, hold_candidates (the driver packages this plan installs, for a
    check run's hold prediction), hold_branch (the branch whose packages a hold keeps: the working driver's or
    the one installed; None when unknown), precompiled_lookup (the Ubuntu package names to
    look up with apt-cache policy), lookup_needed (the plan is provisional until they are looked up) and
    mok_certificate (the DKMS signing certificate to test with mokutil --test-key).
    """
    probe = probe or {}
    state = probe.get('state')
    distribution, version = _version_key(distribution, distribution_version)
    # Why the host is unsupported ('<release> is not ...'), or None: the role then keeps a working driver only.
    unsupported = None
    acceptable_branches = [int(b) for b in (acceptable_branches or [])]
    current_branch = branch_of(probe.get('driver_version')) if state == PROBE_OK else None
    result = dict(action=ACTION_NONE, message='', current_branch=current_branch, acceptable=None, install=False,
                  packages=[], kernel_module=None, module_signed=None, reboot_required=False, reboot_reasons=[],
                  reboot_now=False, warnings=[], blacklist_nouveau=False, hold_candidates=[],
                  precompiled_lookup=[], lookup_needed=False, hold_branch=None,
                  mok_certificate=DKMS_MOK_CERTIFICATES.get((distribution, version)))

    def refuse(message):
        result.update(action=ACTION_REFUSE, message=message, install=False, reboot_now=False)
        return result

    if distribution == 'Ubuntu' and version in UBUNTU_VERSIONS:
        exact, meta, lookup = ubuntu_precompiled_names(branch, server, open_module, kernel, version, installed)
        suffix = ubuntu_suffix(server, open_module)
        utils = 'nvidia-utils-%s%s' % (branch, '-server' if server else '')
        # Not the module metapackage (meta): it must follow kernel upgrades, or the next kernel boots without
        # an NVIDIA module.
        result['hold_candidates'] = [p for p in (
            'nvidia-driver-%s%s' % (branch, suffix), 'nvidia-headless-no-dkms-%s%s' % (branch, suffix), utils,
            exact) if p]
    elif distribution == 'Debian' and version in DEBIAN_BRANCHES:
        exact = meta = None
        lookup = []
        result['hold_candidates'] = ['nvidia-driver', 'nvidia-kernel-dkms']
    else:
        # A release the role cannot install on, let through by preflight_fail_unsupported=false: a working driver
        # is kept (and a mismatch rebooted away), an install is refused below.
        exact = meta = None
        lookup = []
        unsupported = '%s %s is not a release homelab.gpu.nvidia_driver installs the driver on (%s)' % (
            distribution, distribution_version, supported_releases())
    if supported is False and unsupported is None:
        # preflight_host.supported: the platform is outside preflight's lists (architecture, or a list the user
        # narrowed), and preflight_fail_unsupported=false let it through. The two roles agree on what is supported.
        unsupported = ('%s %s is not a platform homelab.gpu.preflight supports (preflight_supported_platforms, '
                       'preflight_supported_architectures)' % (distribution, distribution_version))

    if state not in (PROBE_OK, PROBE_NOT_INSTALLED, PROBE_NO_DEVICES, PROBE_DRIVER_NOT_LOADED, PROBE_MISMATCH,
                     PROBE_ERROR):
        raise PlanError('probe.state must be one of the states of homelab.gpu.nvidia_smi_info, got %r' % (state,))

    # 1. A working driver: keep it if its branch is acceptable.
    install_reason = None
    if state == PROBE_OK:
        if current_branch is None:
            acceptable = False
        elif acceptable_branches:
            acceptable = current_branch in acceptable_branches
        else:
            acceptable = current_branch >= int(min_branch)
        result['acceptable'] = acceptable
        if acceptable:
            result['hold_branch'] = current_branch
            result['message'] = 'NVIDIA driver %s (branch %s) works and is acceptable: nothing to do.' % (
                probe.get('driver_version'), current_branch)
            if unsupported:
                result['warnings'].append('%s; the role keeps the working driver, and would refuse to install '
                                          'another.' % unsupported)
            return result
        wanted = ('one of the branches %s (nvidia_driver_acceptable_branches)'
                  % ', '.join(str(b) for b in acceptable_branches)) if acceptable_branches else (
            'branch %s or newer (nvidia_driver_min_branch)' % min_branch)
        install_reason = 'driver %s works but is not %s' % (probe.get('driver_version'), wanted)
    elif state == PROBE_NO_DEVICES:
        return refuse('The NVIDIA driver is loaded but sees no GPU, which installing it again would not change. %s'
                      % (probe.get('message') or ''))
    elif state == PROBE_ERROR:
        return refuse('nvidia-smi failed in a way that installing the driver would not fix: %s'
                      % (probe.get('message') or 'no message'))
    elif state == PROBE_NOT_INSTALLED:
        install_reason = 'no NVIDIA driver is installed (no nvidia-smi)'
    elif state == PROBE_DRIVER_NOT_LOADED:
        install_reason = 'the NVIDIA kernel module is not loaded'

    # 2. The reboot-only cases.
    reasons = []
    if state == PROBE_MISMATCH:
        reasons.append('the loaded NVIDIA kernel module and the driver libraries differ (driver/library version '
                       'mismatch, as after a driver upgrade)')
    if nouveau_loaded:
        reasons.append('the nouveau module is loaded and holds the GPU; it is blacklisted and goes away at the '
                       'next boot')
        result['blacklist_nouveau'] = True

    # 3. What would be installed, and whether the firmware would load it.
    if unsupported and (install_reason or nouveau_loaded):
        return refuse(unsupported_message(unsupported, install_reason or 'the nouveau module holds the GPU',
                                          acceptable_branches, min_branch))
    if install_reason:
        result['install'] = True
        result['blacklist_nouveau'] = True
        packages, note = _packages(distribution, version, branch, server, open_module, kernel, exact, meta,
                                   lookup, precompiled, prefer_precompiled, result)
        if distribution == 'Debian':
            debian_branch = DEBIAN_BRANCHES[version]
            if acceptable_branches and debian_branch not in acceptable_branches or (
                    not acceptable_branches and debian_branch < int(min_branch)):
                return refuse('%s, and Debian %s ships only branch %s (nvidia-driver from non-free), which the '
                              'role options do not accept either: %s, or use Ubuntu for a newer branch.'
                              % (install_reason[0].upper() + install_reason[1:], version, debian_branch,
                                 ('add %s to nvidia_driver_acceptable_branches' % debian_branch)
                                 if acceptable_branches else
                                 ('lower nvidia_driver_min_branch to %s' % debian_branch)))
        result['packages'] = packages + [p for p in (extra_packages or []) if p not in packages]
        result['hold_branch'] = DEBIAN_BRANCHES[version] if distribution == 'Debian' else int(branch)
        if note:
            result['warnings'].append(note)
        if result['lookup_needed']:
            # Ubuntu before the APT look-up: the role looks the precompiled packages up and plans again.
            result['module_signed'] = None
        elif result['kernel_module'] == 'dkms':
            result['module_signed'] = bool(mok_enrolled)
        else:
            result['module_signed'] = True
        if secure_boot and result['module_signed'] is False:
            return refuse(secure_boot_message(distribution, version,
                                              [p for p in packages if not p.startswith('linux-headers')],
                                              result['mok_certificate']))
        if secure_boot is None and not result['lookup_needed']:
            result['warnings'].append(
                'The Secure Boot state is unknown (no mokutil on the host). If it is on, the %s kernel module '
                'will only load if it is signed by a key the firmware trusts.' % result['kernel_module'])
        reasons.insert(0, 'a new NVIDIA driver is installed (%s)' % install_reason)

    # 4. Reboot: now, as a warning, or refused on the machine Ansible runs on.
    result['reboot_reasons'] = reasons
    result['reboot_required'] = bool(reasons)
    action = ACTION_INSTALL if result['install'] else (ACTION_REBOOT if reasons else ACTION_NONE)
    result['action'] = action
    if not reasons:
        result['message'] = 'Nothing to do.'
        return result
    if reboot and connection_local:
        return refuse(
            'The host needs a reboot (%s), and Ansible runs on this host itself (connection local), so the role '
            'will not reboot it under the running play. Nothing was changed. Either reboot it yourself and re-run, '
            'or set nvidia_driver_reboot: false, so that the role %sonly warns "reboot required" and sets '
            'nvidia_driver_reboot_required.' % ('; '.join(reasons),
                                                'installs the driver and ' if result['install'] else ''))
    if reboot:
        result['reboot_now'] = True
        result['message'] = 'Reboot needed: %s.' % '; '.join(reasons)
    else:
        result['message'] = 'Reboot needed: %s.' % '; '.join(reasons)
        result['warnings'].append(
            'REBOOT REQUIRED: %s. nvidia_driver_reboot is false, so the role did not reboot; reboot the host '
            '(sudo reboot) before using the GPU.' % '; '.join(reasons))
    return result


def _packages(distribution, version, branch, server, open_module, kernel, exact, meta, lookup, precompiled,
              prefer_precompiled, result):
    """Packages to install, setting kernel_module and precompiled_lookup in result. Returns (packages, note)."""
    if distribution == 'Debian':
        result['kernel_module'] = 'dkms'
        note = None
        if open_module:
            note = ('Debian %s ships the proprietary kernel module of branch %s (nvidia-kernel-dkms); '
                    'nvidia_driver_open_kernel_module applies to Ubuntu only.' % (version, DEBIAN_BRANCHES[version]))
        return ['nvidia-driver', 'firmware-misc-nonfree', 'linux-headers-amd64'], note

    suffix = ubuntu_suffix(server, open_module)
    result['precompiled_lookup'] = list(lookup) if prefer_precompiled else []
    if prefer_precompiled and exact and precompiled is None:
        result['lookup_needed'] = True
    available = dict(precompiled or {})
    use_precompiled = bool(prefer_precompiled and exact and available.get(exact))
    if use_precompiled:
        result['kernel_module'] = 'precompiled'
        packages = [exact]
        if meta and available.get(meta):
            packages.append(meta)
        # The no-dkms userspace: nvidia-driver-<branch> would pull nvidia-dkms-<branch>, whose unsigned module in
        # updates/dkms would take precedence over Canonical's signed one.
        packages += ['nvidia-headless-no-dkms-%s%s' % (branch, suffix),
                     'nvidia-utils-%s%s' % (branch, '-server' if server else '')]
        note = None
        if meta and not available.get(meta):
            note = ('%s is not available: the precompiled module is installed for the running kernel %s only; after '
                    'a kernel upgrade, re-run the role.' % (meta, kernel))
        return packages, note

    result['kernel_module'] = 'dkms'
    if not prefer_precompiled:
        note = None
    elif exact is None:
        note = ('Kernel %s is not an Ubuntu kernel, so Canonical has no precompiled NVIDIA module for it: '
                'the module is built by DKMS.' % kernel)
    elif precompiled is None:
        note = None
    else:
        note = ('%s is not available from the APT sources: the module is built by DKMS instead.' % exact)
    headers = 'linux-headers-%s' % kernel if kernel else 'linux-headers-generic'
    return ['nvidia-driver-%s%s' % (branch, suffix), headers], note


def parse_dpkg_query(text):
    """Output of ``dpkg-query -W -f DPKG_HOLD_FORMAT`` -> list of {name, version, source, installed, held}.

    installed: the package is unpacked and configured or half-way (the second letter of db:Status-Abbrev is not
    ``n`` or ``c``: not merely known or left as config files); held: its selection is ``hold`` (first letter ``h``).
    The source is the package name when dpkg prints none (a package built from a source of its own name).
    """
    packages = []
    for line in (text or '').splitlines():
        parts = line.split('\t')
        if len(parts) != 4 or len(parts[0]) < 2:
            continue
        status, name, version, source = parts
        packages.append(dict(name=name.strip(), version=version.strip(), source=source.strip() or name.strip(),
                             installed=status[1] not in 'nc', held=status[0] == 'h'))
    return packages


def driver_package_branch(package, kernel):
    """The driver branch a package of parse_dpkg_query belongs to, or None when it is no NVIDIA driver package.

    Packages built from the driver's source packages (_DRIVER_SOURCE_RE) take the branch from the source name
    (Ubuntu) or from their version (Debian: 535.247.01-1~deb12u1); Canonical's precompiled modules count only for
    the running ``kernel`` (those of other kernels are removed with their kernel).
    """
    source = _DRIVER_SOURCE_RE.fullmatch(package['source'])
    if source:
        if source.group('branch'):
            return int(source.group('branch'))
        return branch_of(re.sub(r'^\d+:', '', package['version']))
    module = _MODULE_PACKAGE_RE.fullmatch(package['name'])
    if module and module.group('kernel') == kernel:
        return int(module.group('branch'))
    return None


def hold_plan(dpkg_text, driver_plan, kernel):
    """What nvidia_driver_hold_packages holds: the installed packages of the working (or just installed) driver.

    dpkg_text: output of ``dpkg-query -W -f DPKG_HOLD_FORMAT``; driver_plan: the result of plan(), whose
    hold_branch says which branch (None: every installed driver branch) and, when it installs, whose
    hold_candidates among its packages are predicted for a check run that installed nothing.

    Returns {packages: every driver package to keep held, sorted; to_hold: those not held yet; branches: the
    branches found; message: what was (or, for a check run, would be) held}.
    """
    branch = driver_plan.get('hold_branch')
    found = {}
    for package in parse_dpkg_query(dpkg_text):
        if not package['installed']:
            continue
        package_branch = driver_package_branch(package, kernel)
        if package_branch is not None and (branch is None or package_branch == branch):
            found[package['name']] = (package_branch, package['held'])
    if driver_plan.get('install'):
        for name in driver_plan.get('packages') or []:
            if name in (driver_plan.get('hold_candidates') or []) and name not in found:
                found[name] = (branch, False)
    packages = sorted(found)
    to_hold = [name for name in packages if not found[name][1]]
    branches = sorted(set(b for b, _held in found.values() if b is not None))
    of_branch = ('NVIDIA driver branch %s' % branch) if branch is not None else (
        'the NVIDIA driver (branch %s)' % ', '.join(str(b) for b in branches) if branches else 'the NVIDIA driver')
    if not packages:
        message = ('nvidia_driver_hold_packages is true, but no installed package belongs to %s, so nothing was '
                   'held. A driver installed with NVIDIA\'s .run installer is no package and cannot be held.'
                   % of_branch)
    elif not to_hold:
        message = 'The %d packages of %s are held already: %s.' % (len(packages), of_branch, ', '.join(packages))
    else:
        message = 'Held %d packages of %s%s: %s.' % (
            len(packages), of_branch,
            ' (%d of them already)' % (len(packages) - len(to_hold)) if len(to_hold) < len(packages) else '',
            ', '.join(packages))
    return dict(packages=packages, to_hold=to_hold, branches=branches, message=message)
