# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The manager of cog_model: read the host, plan, then stop, pull, run, wait and roll back. Private.

The planning is ``_cog_plan`` (pure); every docker command and the cog API go through ``_cog_docker``, whose
dry run (check mode) records instead of acting. So this file reads the same in both modes.
"""

from __future__ import annotations

import os
import pwd
import time

from ansible_collections.homelab.gpu.plugins.module_utils import _cdi
from ansible_collections.homelab.gpu.plugins.module_utils import _cog
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_api
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_image
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_inspect
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_plan
from ansible_collections.homelab.gpu.plugins.module_utils import _gpu_procs
from ansible_collections.homelab.gpu.plugins.module_utils import _nvidia_smi
from ansible_collections.homelab.gpu.plugins.module_utils import _registry
from ansible_collections.homelab.gpu.plugins.module_utils._common import run_command
from ansible_collections.homelab.gpu.plugins.module_utils._cog_docker import CogAPI, DeployFailed, DockerCLI


def listening_ports():
    """Ports in LISTEN state on the host, from /proc/net/tcp and tcp6."""
    found = set()
    for path in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(path) as handle:
                found |= _cog_inspect.parse_listening_ports(handle.read())
        except (IOError, OSError):
            continue
    return found


class CogModels:
    """Deploy the cog models of one host; see the module's documentation."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.docker = None
        self.api = None
        self.actions = []
        self.changed = False
        self.containers = {}
        self.image_ids = {}
        self.gpu_request = None
        self.cdi_names = {}
        self.takeovers = {}
        self._gpu_info = None

    # ------------------------------------------------------------------ helpers

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, changed=self.changed, actions=self.actions, **extra)

    def act(self, text):
        self.actions.append(text)
        self.changed = True

    def gpu_info(self):
        """nvidia_smi_info's result, read once per run (pre-flight and the image checks share it)."""
        if self._gpu_info is None:
            self._gpu_info = _nvidia_smi.probe(self.module, run_command, self.params['gpu_info'],
                                               self.params['nvidia_smi_path'])
        return self._gpu_info

    def gpu_usage(self, gpus):
        """``{(GPU UUID, container name): MiB}`` from the GPU processes and their cgroups."""
        by_id = dict((c['id'], c['name']) for c in self.containers.values())
        cgroups = _gpu_procs.read_cgroups(_gpu_procs.gpu_pids(gpus))
        by_container, dummy = _gpu_procs.attribute(gpus, cgroups, by_id)
        return dict(((e['gpu_uuid'], name), e['used_mib'])
                    for name, entries in by_container.items() for e in entries if e['used_mib'])

    def logs(self, model):
        return self.docker.logs(model['name'], self.params['log_lines'])

    def failure(self, model, what, exc, logs):
        return ('%s: %s: %s\nLast %d lines of the container log:\n%s'
                % (model['name'], what, exc, self.params['log_lines'], logs or '(empty)'))

    # ------------------------------------------------------------------ pre-flight

    def preflight(self, models):
        """Read the host and plan; fail before anything changes. Returns ``(gpu_sets, to_stop, report)``."""
        refuse = 'Pre-flight refused the model list: %s'
        errors = _cog.validate_models(models)
        if errors:
            self.fail(refuse % '; '.join(errors))
        for warning in _cog_plan.untagged(models):
            self.module.warn(warning)
        errors = _cog_plan.name_errors(models, self.containers)
        requests = _cog_plan.gpu_requests(models)
        info = self.gpu_info() if _cog_plan.wants_gpu(models, requests) else {'state': None, 'gpus': []}
        gpus = info.get('gpus') or []
        sets, gpu_errors = _cog_plan.gpu_sets(models, requests, info)
        errors += gpu_errors
        if not errors:
            found = None
            if _cog_plan.needs_docker_gpu_facts(models, sets, self.params):
                found = _cdi.probe(lambda argv, timeout: run_command(self.module, argv, timeout=timeout),
                                   self.docker.docker)
            self.gpu_request, self.cdi_names, request_errors = _cog_plan.gpu_request(
                models, sets, gpus, requests, self.params, found)
            errors += request_errors
        if errors:
            self.fail(refuse % '; '.join(errors))
        to_stop = _cog_plan.stops(models, self.containers, sets)
        errors, self.takeovers, to_stop = _cog_plan.ports(models, self.containers, to_stop, listening_ports())
        report, vram_errors = _cog_plan.vram(models, sets, gpus, self.gpu_usage(gpus) if gpus else {}, to_stop)
        errors += vram_errors
        if errors:
            self.fail(refuse % '; '.join(errors), gpus=report, gpu_request=self.gpu_request)
        return sets, to_stop, report

    # ------------------------------------------------------------------ registry and images

    @staticmethod
    def docker_config_path():
        # The docker CLI run by this module (as the become user) reads its credentials from here.
        home = pwd.getpwuid(os.getuid()).pw_dir
        base = os.environ.get('DOCKER_CONFIG') or os.path.join(home, '.docker')
        return os.path.join(base, 'config.json')

    def login(self):
        path = self.docker_config_path()
        for auth in self.params['registry_auths']:
            try:
                with open(path) as handle:
                    current = handle.read()
            except (IOError, OSError):
                current = ''
            if _cog_image.auth_matches(current, auth['registry'], auth['username'], auth['password']):
                continue
            self.docker.login(auth['registry'], auth['username'], auth['password'])
            # Recorded once done, so that a refused login does not show up as a change.
            self.act('logged in to %s as %s' % (auth['registry'], auth['username']))
        if self.docker.restrict_mode(path):
            self.act('made %s mode 0600' % path)

    def pull(self, models):
        for model in models:
            image = model.get('image')
            if not image or image in self.image_ids:
                continue
            self.image_ids[image] = self.docker.image_id(image)
            if self.image_ids[image] or model['state'] != 'started':
                continue
            self.act('pulled %s' % image)
            self.docker.pull(image, self.params['pull_timeout'])
            self.image_ids[image] = self.docker.image_id(image)

    def prune(self, model):
        image = model['image']
        image_id = self.image_ids.get(image) or self.docker.image_id(image)
        if not image_id:
            return
        users = [c['name'] for c in self.containers.values()
                 if c['image_id'] == image_id and c['name'] != model['name']]
        if users:
            self.module.warn('%s: image %s is kept, containers %s still use it'
                             % (model['name'], image, ', '.join(sorted(users))))
            return
        self.act('removed image %s' % image)
        self.docker.remove_image(image)

    # ------------------------------------------------------------------ containers

    def verify(self, model, started_wall, smoke=True):
        """Readiness, then the smoke prediction if any and asked for; the info for the model's result."""
        url = _cog_plan.url_of(model)
        info = self.api.wait_ready(model['name'], url, model['readiness_timeout'], started_wall)
        info['smoke'] = None
        if smoke and model.get('smoke_input') is not None:
            info['smoke'], schema = self.api.smoke(url, model['smoke_input'])
            if schema is not None:
                info['smoke_schema'] = schema
        return info

    def stop_containers(self, models, to_stop, by_name):
        """Free ports and GPU memory first: the stops and removals of this run."""
        for name, why in to_stop.items():
            cont = self.containers.get(name)
            model = next((m for m in models if m['name'] == name), None)
            if cont is None:
                continue
            if model is not None and model['state'] == 'absent':
                self.act('removed %s' % name)
                by_name[name].update(action='removed', changed=True, container_id=cont['id'])
                self.docker.remove(name)
                continue
            if cont['running']:
                self.act('stopped %s (%s)' % (name, why))
                if name in by_name:
                    by_name[name].update(action='stopped', changed=True, container_id=cont['id'])
                self.docker.stop(name, self.params['stop_timeout'])
            elif name in by_name:
                by_name[name]['container_id'] = cont['id']

    def deploy(self, model, gpu_uuids, result):
        """Bring one started model to READY. Raises DeployFailed after any rollback."""
        name = model['name']
        spec = _cog.run_spec(model, self.params['gpu_requests'], self.cdi_names.get(name))
        chash = _cog.config_hash(spec)
        current = self.containers.get(name)
        image_id = self.image_ids.get(model['image'])
        action = _cog_plan.action(current, chash, image_id)
        result.update(cdi_devices=list(spec.get('cdi_devices') or []), config_hash=chash, image_id=image_id,
                      action=action, changed=action != 'unchanged',
                      container_id=current['id'] if current else None)
        if action == 'unchanged':
            try:
                result.update(self.verify(model, None, smoke=False))
            except DeployFailed as exc:
                raise DeployFailed(self.failure(model, 'the running container (unchanged) is not healthy', exc,
                                                self.logs(model)))
            return
        if action == 'started':
            self.act('started %s' % name)
            self.docker.start(name)
            try:
                result.update(self.verify(model, time.time()))
            except DeployFailed as exc:
                logs = self.logs(model)
                self.docker.stop(name, self.params['stop_timeout'])
                raise DeployFailed(self.failure(model, 'the existing container did not become ready after a start '
                                                       '(it was stopped again)', exc, logs))
            return
        if action == 'created':
            self.act('created %s (%s on port %s)' % (name, model['image'], model['port']))
        elif not current['managed']:
            self.act('took over %s, a container not managed by homelab.gpu (kept as %s%s until the new one is READY)'
                     % (name, name, _cog.PREVIOUS_SUFFIX))
        else:
            self.act('replaced %s (config hash %s -> %s)' % (name, (current['config_hash'] or 'none')[:12],
                                                             chash[:12]))
        self.replace(model, spec, chash, gpu_uuids, current, result)

    def replace(self, model, spec, chash, gpu_uuids, current, result):
        """Keep the current container as ``<name>.previous``, run the new one, and roll back when it fails."""
        name = model['name']
        previous = None
        if current is not None:
            previous = name + _cog.PREVIOUS_SUFFIX
            if previous in self.containers:
                self.docker.remove(previous)
            if current['running']:
                self.docker.stop(name, self.params['stop_timeout'])
            self.docker.rename(name, previous)
        try:
            started_wall = self.docker.run_container(_cog.run_argv(self.docker.docker, name, spec, chash,
                                                                   gpu_uuids)[1:])
            fresh = self.docker.container(name)
            result['container_id'] = fresh['id'] if fresh else None
            result.update(self.verify(model, started_wall))
        except DeployFailed as exc:
            logs = self.logs(model)
            if self.docker.container(name) is not None:
                self.docker.remove(name)
            self.restart_taken_over(model)
            if previous is None:
                raise DeployFailed(self.failure(model, 'the new container failed and was removed; there was no '
                                                       'previous version to go back to', exc, logs))
            self.docker.rename(previous, name)
            self.act('rolled back %s to its previous container (config hash %s)'
                     % (name, (current['config_hash'] or 'none')[:12]))
            back = self.restart_previous(model, current)
            raise DeployFailed(self.failure(model, 'the new container (image %s, config hash %s) failed, so it was '
                                                   'removed and the previous container (config hash %s) %s. Failure'
                                            % (model['image'], chash[:12], (current['config_hash'] or 'none')[:12],
                                               back), exc, logs))
        if previous is not None:
            self.docker.remove(previous)

    def restart_previous(self, model, current):
        """Start the rolled-back container again if it ran before; say how it went."""
        if not current['running']:
            return 'is stopped, as it was before'
        self.docker.start(model['name'])
        old = dict(model)
        if current['bindings']:
            old.update(bind_address=current['bindings'][0][0] or '0.0.0.0', port=current['bindings'][0][1])
        try:
            again = self.api.wait_ready(model['name'], _cog_plan.url_of(old), model['readiness_timeout'], None)
            return 'serves again (%s)' % again['health']
        except DeployFailed as exc:
            return 'was started again but is not ready either: %s' % exc

    def restart_taken_over(self, model):
        """Start again the containers of another name whose port this failed model took over."""
        for other in self.takeovers.get(model['name'], []):
            cont = self.containers.get(other)
            if cont is not None and cont['running']:
                self.docker.start(other)
                self.act('started %s again (the model that took over its port failed)' % other)

    @staticmethod
    def answers_ready(cont):
        """One look at /health-check of a running container, on the ports it publishes (a read, in check mode too)."""
        for bind_address, port in cont['bindings']:
            health, dummy = _cog_http.health('http://%s:%d' % (_cog_inspect.poll_host(bind_address), port))
            if health is not None and _cog_api.is_ready(health):
                return True
        return False

    def recover_leftovers(self, models):
        """A .previous container from an interrupted run: give it its name back, or drop it when stale.

        The container that an interrupted takeover kept (not managed by homelab.gpu) is removed only next to a new
        container that answers READY; otherwise it gets its name back, and deploy takes it over again.
        """
        ready = set(name for name in _cog_plan.leftover_probes(models, self.containers)
                    if self.answers_ready(self.containers[name]))
        for name, what in _cog_plan.leftovers(models, self.containers, ready):
            previous = name + _cog.PREVIOUS_SUFFIX
            kept = '' if self.containers[previous]['managed'] else ' (not managed by homelab.gpu, kept by a takeover)'
            if what == 'drop':
                self.act('removed the stale %s' % previous)
            elif what == 'finish':
                self.act('removed %s%s, left by an interrupted run: the new %s is READY' % (previous, kept, name))
            if what in ('drop', 'finish'):
                self.docker.remove(previous)
                del self.containers[previous]
                continue
            if what == 'undo':
                self.act('removed %s, the new container of an interrupted takeover, which is not READY' % name)
                self.docker.remove(name)
                del self.containers[name]
            self.act('renamed %s%s, left by an interrupted run, back to %s' % (previous, kept, name))
            self.docker.rename(previous, name)
            cont = self.containers.pop(previous)
            cont['name'] = name
            self.containers[name] = cont

    # ------------------------------------------------------------------ main

    def run(self):
        models = _cog_plan.normalize(self.params['models'], self.params)
        docker = self.module.get_bin_path('docker')
        if not docker:
            self.fail('The docker CLI was not found on PATH; install Docker first (homelab.gpu.docker role)')
        self.docker = DockerCLI(self.module, docker, run_command, dry_run=self.module.check_mode)
        self.api = CogAPI(self.docker, self.params, sleep=time.sleep)
        try:
            self.containers = self.docker.containers()
        except DeployFailed as exc:
            hint = ''
            if 'Cannot connect to the Docker daemon' in str(exc):
                hint = (' Nothing was changed: start Docker (systemctl start docker) or run the homelab.gpu.docker '
                        'role (playbook homelab.gpu.provision), which starts it, then re-run.')
            self.fail('Cannot list containers: %s%s' % (exc, hint))
        sets, to_stop, report = self.preflight(models)
        # registry hook (homelab.gpu _registry): read each image to start before any pull, in check mode too.
        try:
            image_errors, image_checks = _registry.preflight(self.module, docker, models, self.gpu_info, run_command,
                                                             self.docker.image)
        except DeployFailed as exc:
            self.fail('Pre-flight could not read the images on the host, so nothing was changed: %s' % exc)
        if image_errors:
            self.fail('Pre-flight refused the model list: %s' % '; '.join(image_errors), image_checks=image_checks)
        before = dict((m['name'], _cog_plan.state_of(self.containers, m['name'])) for m in models)
        for name in to_stop:
            before.setdefault(name, _cog_plan.state_of(self.containers, name))
        results = [{'name': m['name'], 'state': m['state'], 'action': 'none', 'changed': False,
                    'image': m.get('image'), 'image_id': None, 'config_hash': None, 'container_id': None,
                    'gpus': sorted(sets.get(m['name']) or []),
                    'url': _cog_plan.url_of(m) if m.get('port') else None, 'health': None, 'ready_seconds': None,
                    'ready_seen_after_s': None, 'smoke': None, 'cdi_devices': []} for m in models]
        by_name = dict((r['name'], r) for r in results)
        try:
            self.recover_leftovers(models)
            self.login()
            self.pull(models)
            self.stop_containers(models, to_stop, by_name)
            for model in models:
                if model['state'] == 'absent' and model.get('prune_image') and model.get('image'):
                    self.prune(model)
            for model in models:
                if model['state'] == 'started':
                    self.deploy(model, sorted(sets[model['name']]), by_name[model['name']])
        except DeployFailed as exc:
            self.fail(str(exc), models=results, gpus=report, gpu_request=self.gpu_request)
        if self.docker.dry_run:
            # Nothing ran: the diff's after is what the recorded commands would leave.
            after = dict((m['name'], _cog_plan.predicted_state(m, r, before[m['name']])) for m, r in zip(models, results))
            for name in to_stop:
                after.setdefault(name, dict(before[name], state='stopped'))
        else:
            try:
                self.containers = self.docker.containers()
            except DeployFailed as exc:
                self.fail('The models were deployed, but listing the containers afterwards failed: %s' % exc,
                          models=results, gpus=report, gpu_request=self.gpu_request)
            after = dict((name, _cog_plan.state_of(self.containers, name)) for name in before)
        self.module.exit_json(changed=self.changed, actions=self.actions, models=results, gpus=report,
                              gpu_request=self.gpu_request, diff={'before': before, 'after': after},
                              image_checks=image_checks)


def run_module(module):
    CogModels(module).run()
