#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


DOCUMENTATION = r"""
module: docker_daemon_config

short_description: Read and change Docker's daemon.json without losing what is already there

version_added: 0.1.0

description:
  - Reads Docker's C(daemon.json) and returns its content.
  - When asked, changes it in place by deep-merging O(settings), removing the keys listed in O(remove) and applying the
    convenience options (O(nvidia_runtime), O(default_runtime), O(experimental), O(log_driver), O(log_opts), O(data_root),
    O(insecure_registries)). Keys it is not asked to change stay as they are, in their order.
  - Without any of those options the module only reads the file (a probe); it then never changes anything and needs no
    write access.
  - An empty file, or one holding only whitespace, counts as V({}), as it does for dockerd.
  - A file that is not valid JSON, or whose top level is not a JSON object, makes the module fail with the file name and
    the parser's line and column; the file is left byte for byte as it was. So does what dockerd refuses although
    Python's parser takes it, named with its key - V(NaN), V(Infinity) and numbers too big for a float (V(1e400)) - and
    nesting more than 100 levels deep.
  - Something at O(path) that is not a regular file (a directory, a FIFO, a device) is refused without reading from
    it, so the module never waits on a pipe.
  - Run as a user other than root, the module checks before writing anything, in check mode too, that it could replace
    the file and keep its owner and group, and fails saying which of those it may not do (run it with
    C(become=true)).
  - The new content is written to a temporary file in the same directory, synced to disk and renamed over the old file,
    so readers see either the old or the new file. The mode and owner of an existing file are kept; a new file gets mode
    V(0644) and the owner the module runs as (root). A missing directory is created with mode V(0755). A missing file is
    created only when there is something to set.
  - Before the new content is put in place it is checked with C(dockerd --validate --config-file <temp file>) where the
    installed dockerd supports it (Docker 23 and later). Older dockerd (Debian 12's C(docker.io) 20.10) has no such
    check; the module then writes the file and returns RV(validated=false) with the reason in RV(validation_message).
  - The module does not restart Docker. RV(restart_required) tells the caller to do it (for example with a handler using
    M(ansible.builtin.systemd_service)).

extends_documentation_fragment:
  - homelab.gpu.attributes

attributes:
  check_mode:
    support: full
    details:
      - Predicts C(changed), RV(config), RV(actions), RV(backups_removed) and the diff without writing next to the
        file. Only when dockerd can validate, the predicted content is validated from a file in Ansible's own
        temporary directory, which is removed afterwards.
  diff_mode:
    support: full
    details:
      - The diff shows the file's text before and after, as JSON text.
  idempotent:
    support: full

options:
  path:
    description:
      - Path of the daemon configuration file.
      - When it is a symbolic link, the file it points to is changed and the link stays.
    type: path
    default: /etc/docker/daemon.json
  settings:
    description:
      - 'Settings to deep-merge into the file, as they appear in C(daemon.json) (for example V({"log-driver": "local"})).'
      - Objects are merged key by key at every level; any other value replaces the value in the file.
      - Lists are handled as O(list_merge) says.
      - A key set here must not also be set by a convenience option or listed in O(remove).
    type: dict
  remove:
    description:
      - Keys to remove, as dotted paths (V(runtimes.nvidia), V(log-opts.max-size)). Write V(\\.) for a dot that is part of
        a key.
      - A key that is not there is not an error (nothing to do).
      - The parent of a removed key stays, even when it is left empty (removing V(runtimes.nvidia) from a file that has
        only that runtime leaves an empty C(runtimes) object).
      - Removal happens before O(settings) are merged; a path must not overlap a key that is set.
    type: list
    elements: str
    default: []
  list_merge:
    description:
      - How a list in O(settings) (or O(insecure_registries)) is combined with a list already in the file.
      - V(replace) (the default) puts the given list in place of the old one, so the file ends up with exactly the given
        list.
      - V(append_unique) keeps the old list and appends the given items that are not in it yet, in the given order; a
        value in the file that is not a list is replaced.
    type: str
    choices:
      - replace
      - append_unique
    default: replace
  nvidia_runtime:
    description:
      - Register the NVIDIA container runtime as C(runtimes.nvidia) (what C(nvidia-ctk runtime configure) does).
      - Other keys under C(runtimes.nvidia) and other runtimes are kept.
    type: dict
    suboptions:
      path:
        description:
          - Path of the runtime binary; becomes C(runtimes.nvidia.path).
        type: str
        default: /usr/bin/nvidia-container-runtime
      args:
        description:
          - Arguments for the runtime; become C(runtimes.nvidia.runtimeArgs) (the key dockerd reads). Not given, the key
            is left as it is.
        type: list
        elements: str
  default_runtime:
    description:
      - Runtime for containers that do not ask for one (V(nvidia) to make every container see the GPUs); becomes
        C(default-runtime).
    type: str
  experimental:
    description:
      - Turn the daemon's experimental features on or off (C(docker checkpoint) with CRIU needs them on); becomes
        C(experimental).
    type: bool
  log_driver:
    description:
      - Default logging driver (for example V(local) or V(json-file)); becomes C(log-driver).
    type: str
  log_opts:
    description:
      - 'Options of the logging driver (for example V({"max-size": "10m", "max-file": "3"})); merged into C(log-opts).'
      - Values are written as strings (V(3) as V("3"), V(true) as V("true")), since dockerd accepts nothing else there.
      - Only strings, numbers and booleans are accepted; V(null), lists, objects and V(NaN) make the module fail with
        the key.
    type: dict
  data_root:
    description:
      - Root directory of Docker's persistent state (images, containers, volumes); becomes C(data-root).
      - Only the setting changes; the module does not move existing data.
    type: path
  insecure_registries:
    description:
      - Registries Docker may reach over plain HTTP or with unverified TLS; becomes C(insecure-registries).
      - Combined with an existing list as O(list_merge) says.
    type: list
    elements: str
  backup:
    description:
      - Before changing an existing file, keep a copy next to it named with the process ID and a time stamp, and return
        its path as RV(backup_file).
      - After a successful change, remove the oldest backups of the file so that at most O(backup_keep) stay.
    type: bool
    default: false
  backup_keep:
    description:
      - How many backups of the file to keep with O(backup=true), counting the one this call makes. Older ones are
        removed after the new content is in place, oldest first, and listed in RV(backups_removed).
      - A backup is a file next to the real file named C(<file name>.<number>.<YYYY-MM-DD@HH:MM:SS>~), as Ansible's
        own backups are (M(ansible.builtin.copy) with C(backup=true) makes the same); other files are never removed.
      - Must be 1 or more. Nothing is removed when nothing changes, or with O(backup=false).
    type: int
    default: 3
  validate:
    description:
      - Check the new content with C(dockerd --validate) before putting it in place, where dockerd supports it.
      - When the check runs and fails, the module fails, includes dockerd's message and leaves the file as it was.
    type: bool
    default: true

notes:
  - Whether dockerd supports C(--validate) is found out on every run (from C(dockerd --help)); nothing is cached.
  - Changing C(daemon.json) does not change the running daemon. Restart Docker when RV(restart_required) is true.

seealso:
  - name: Docker daemon configuration file
    description: The keys C(daemon.json) accepts.
    link: https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file

author:
  - homelab.gpu contributors (@homelab-gpu)
"""

EXAMPLES = r"""
---
- name: Read daemon.json
  homelab.gpu.docker_daemon_config:
  register: __docker_daemon_config

- name: Show the configured storage driver
  ansible.builtin.debug:
    msg: "{{ __docker_daemon_config.config['storage-driver'] | default('(default)') }}"

- name: Register the NVIDIA runtime and make it the default
  homelab.gpu.docker_daemon_config:
    nvidia_runtime:
      path: /usr/bin/nvidia-container-runtime
    default_runtime: nvidia
    backup: true
  notify: Restart docker

- name: Turn on experimental features for docker checkpoint (CRIU)
  homelab.gpu.docker_daemon_config:
    experimental: true
  notify: Restart docker

- name: Rotate container logs
  homelab.gpu.docker_daemon_config:
    log_driver: json-file
    log_opts:
      max-size: 10m
      max-file: 3
  notify: Restart docker

- name: Add a registry mirror, keeping the mirrors already configured
  homelab.gpu.docker_daemon_config:
    settings:
      registry-mirrors:
        - https://mirror.lab.example:5000
    list_merge: append_unique
  notify: Restart docker

- name: Stop using the NVIDIA runtime by default
  homelab.gpu.docker_daemon_config:
    remove:
      - default-runtime
  notify: Restart docker
"""

RETURN = r"""
path:
  description: The path of the configuration file.
  returned: always
  type: str
  sample: /etc/docker/daemon.json
exists:
  description:
    - Whether the file exists after the call (in check mode, whether it would exist).
  returned: always
  type: bool
  sample: true
config:
  description:
    - The content of the file after the call (in check mode, what it would be). V({}) for a missing or empty file.
  returned: always
  type: dict
  sample:
    storage-driver: vfs
    runtimes:
      nvidia:
        path: /usr/bin/nvidia-container-runtime
    experimental: true
actions:
  description:
    - What was changed (in check mode, what would be changed), one readable line each. Empty when nothing changes.
  returned: always
  type: list
  elements: str
  sample:
    - set runtimes.nvidia.path to /usr/bin/nvidia-container-runtime
    - removed experimental
restart_required:
  description:
    - Whether, because of this call, the file on disk differs from what the running daemon loaded, so Docker needs a
      restart to use it. True whenever the module changed the file (in check mode, would change it).
  returned: always
  type: bool
  sample: true
validated:
  description:
    - Whether the new content was checked with C(dockerd --validate) and passed. False when nothing changed, when
      O(validate=false), and when dockerd is missing or too old to validate.
  returned: always
  type: bool
  sample: false
validation_message:
  description:
    - What came of validation, in words, including dockerd's own output when it ran.
  returned: always
  type: str
  sample: dockerd on this host does not support --validate (Docker 23 or later needed); the content was not validated
backups_removed:
  description:
    - Older backups removed because of O(backup_keep) (in check mode, the ones that would be removed), oldest first.
  returned: always
  type: list
  elements: str
  sample:
    - /etc/docker/daemon.json.2187.2024-04-30@09:12:44~
backup_file:
  description: Path of the backup copy made because of O(backup=true).
  returned: when O(backup=true) and an existing file was changed (not in check mode)
  type: str
  sample: /etc/docker/daemon.json.2301.2024-05-01@12:00:00~
diff:
  description: The file's text before and after.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: The text before (empty for a missing file).
      type: str
      returned: success
    after:
      description: The text after.
      type: str
      returned: success
  sample:
    before: "{\n  \"storage-driver\": \"vfs\"\n}\n"
    after: "{\n  \"storage-driver\": \"vfs\",\n  \"experimental\": true\n}\n"
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.gpu.plugins.module_utils._common import command_error, run_command
from ansible_collections.homelab.gpu.plugins.module_utils import _daemon_json as dj

# Convenience option -> the daemon.json key it sets (for messages).
CONVENIENCE_KEYS = {
    'nvidia_runtime': 'runtimes',
    'default_runtime': 'default-runtime',
    'experimental': 'experimental',
    'log_driver': 'log-driver',
    'log_opts': 'log-opts',
    'data_root': 'data-root',
    'insecure_registries': 'insecure-registries',
}
HELP_TIMEOUT = 30
VALIDATE_TIMEOUT = 60
UNSUPPORTED = ('dockerd on this host does not support --validate (Docker 23 or later needed); '
               'the content was not validated')


class DaemonConfig:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.path = self.params['path']

    def fail(self, msg, **kwargs):
        self.module.fail_json(msg=msg, path=self.path, **kwargs)

    def wanted_changes(self):
        """Whether any option that changes the file was given."""
        return any(self.params[name] for name in ('settings', 'remove')) or any(
            self.params[name] is not None for name in CONVENIENCE_KEYS)

    def extra_settings(self):
        return dj.convenience_settings(**dict((name, self.params[name]) for name in CONVENIENCE_KEYS))

    def validator(self):
        """``(dockerd, None)`` when dockerd can check a file, else ``(None, why not)``; writes nothing."""
        if not self.params['validate']:
            return None, 'validation skipped (validate=false)'
        dockerd = self.module.get_bin_path('dockerd')
        if not dockerd:
            return None, 'dockerd was not found on this host; the content was not validated'
        res = run_command(self.module, [dockerd, '--help'], timeout=HELP_TIMEOUT)
        if res.timed_out:
            return None, '%s; the content was not validated' % command_error('dockerd --help', res)
        if not dj.supports_validate(res.stdout + '\n' + res.stderr):
            return None, UNSUPPORTED
        return dockerd, None

    def validate(self, dockerd, staged):
        """Run dockerd's own check on ``staged``; return ``(validated, message)`` or fail."""
        res = run_command(self.module, [dockerd, '--validate', '--config-file', staged], timeout=VALIDATE_TIMEOUT)
        output = '\n'.join(s.strip() for s in (res.stdout, res.stderr) if s.strip())
        if res.timed_out:
            self.fail('%s; %s was left untouched' % (command_error('dockerd --validate', res), self.path))
        if res.rc != 0:
            if dj.rejects_validate_flag(output):
                return False, UNSUPPORTED
            self.fail('dockerd rejected the new content for %s (rc %d): %s; the file was left untouched'
                      % (self.path, res.rc, output or '(no output)'),
                      validation_message=output, rc=res.rc)
        return True, 'dockerd --validate: %s' % (output or 'configuration OK')

    def run(self):
        keep = self.params['backup_keep']
        if keep < 1:
            self.fail('backup_keep is %d, but it counts the backup this call makes, so it must be 1 or more; '
                      'set backup=false to make no backup' % keep)
        try:
            exists, text = dj.read_file(self.path)
            old = dj.parse(text, self.path)
        except dj.DaemonJsonError as exc:
            self.fail(str(exc))

        new, actions = old, []
        if self.wanted_changes():
            try:
                new, actions = dj.apply_request(
                    old, self.params['settings'], self.extra_settings(), self.params['remove'],
                    self.params['list_merge'], dict((key, name) for name, key in CONVENIENCE_KEYS.items()))
            except dj.DaemonJsonError as exc:
                self.fail(str(exc))

        changed = not dj.same(old, new)
        if not changed:
            actions = []
        new_text = dj.serialize(new) if changed else text
        results = dict(
            changed=changed,
            path=self.path,
            exists=exists or changed,
            config=new,
            actions=actions,
            restart_required=changed,
            validated=False,
            validation_message='no change; nothing to validate',
            backups_removed=[],
        )
        if self.module._diff:
            results['diff'] = dict(before=text, after=new_text,
                                   before_header=self.path, after_header=self.path)
        if changed:
            self.write(new_text, exists, results)
        return results

    def write(self, new_text, exists, results):
        real = os.path.realpath(self.path)
        st = os.stat(real) if exists else None
        # Before anything is written, in check mode too: what would stop a user who is not root.
        problem = dj.write_problem(real, exists, st)
        if problem:
            self.fail('%s; run as root (become: true). %s was left untouched' % (problem, self.path))
        dockerd, results['validation_message'] = self.validator()
        if self.check_mode:
            # Nothing is written next to the file. Only when dockerd can check the content does the
            # prediction go to a file in Ansible's own temporary directory, without mode or owner.
            if dockerd:
                staged = self.stage(os.path.join(self.module.tmpdir, os.path.basename(real)), new_text)
                try:
                    results['validated'], results['validation_message'] = self.validate(dockerd, staged)
                finally:
                    dj.discard(staged)
            if self.params['backup']:
                # The backup this run would make is the newest, so one fewer of the present ones stays.
                results['backups_removed'] = self.backups_to_prune(real, self.params['backup_keep'] - int(exists))
            return
        staged = self.stage(real, new_text, *((st.st_mode & 0o7777, st.st_uid, st.st_gid) if st else ()))
        try:
            if dockerd:
                results['validated'], results['validation_message'] = self.validate(dockerd, staged)
            if exists and self.params['backup']:
                results['backup_file'] = self.module.backup_local(real)
            try:
                dj.commit_file(staged, real)
            except OSError as exc:
                self.fail('could not replace %s (%s); the file was left untouched' % (real, exc.strerror or exc))
        finally:
            # After a successful rename there is nothing left to remove; after a failure the temp file goes.
            dj.discard(staged)
        if self.params['backup']:
            results['backups_removed'] = self.prune_backups(real)

    def stage(self, where, new_text, mode=None, uid=None, gid=None):
        try:
            return dj.stage_file(where, new_text, mode=mode, uid=uid, gid=gid)
        except dj.WriteError as exc:
            hint = '; run as root (become: true)' if exc.not_permitted and os.geteuid() != 0 else ''
            self.fail('%s%s. %s was left untouched' % (exc, hint, self.path))

    def backups_to_prune(self, real, keep):
        names = dj.backups_to_prune(os.path.basename(real), dj.list_backups(real), keep)
        return [os.path.join(os.path.dirname(real), name) for name in names]

    def prune_backups(self, real):
        """Remove the backups beyond ``backup_keep``, oldest first; return the paths removed."""
        removed = []
        for path in self.backups_to_prune(real, self.params['backup_keep']):
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.module.warn('could not remove the old backup %s (%s)' % (path, exc.strerror or exc))
                continue
            removed.append(path)
        return removed


def main():
    argument_spec = dict(
        path=dict(type='path', default=dj.DEFAULT_PATH),
        settings=dict(type='dict'),
        remove=dict(type='list', elements='str', default=[]),
        list_merge=dict(type='str', choices=list(dj.LIST_MERGE_MODES), default='replace'),
        nvidia_runtime=dict(type='dict', options=dict(
            path=dict(type='str', default='/usr/bin/nvidia-container-runtime'),
            args=dict(type='list', elements='str'),
        )),
        default_runtime=dict(type='str'),
        experimental=dict(type='bool'),
        log_driver=dict(type='str'),
        log_opts=dict(type='dict'),
        data_root=dict(type='path'),
        insecure_registries=dict(type='list', elements='str'),
        backup=dict(type='bool', default=False),
        backup_keep=dict(type='int', default=3),
        validate=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    module.exit_json(**DaemonConfig(module).run())


if __name__ == '__main__':
    main()
