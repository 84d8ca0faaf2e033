# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check a cog image before a pull of tens of GB: read its manifest and config from the registry.

Private to this collection: no API promise.

``cog build`` writes what the model needs into the image's labels: ``run.cog.config`` holds cog.yaml as
JSON (``build.gpu``, ``build.cuda``), and ``run.cog.openapi_schema`` the model's OpenAPI schema. The manifest
gives the compressed size of every layer. With the Docker Registry HTTP API v2 (token auth through the
``WWW-Authenticate: Bearer realm=...`` challenge, with the same credentials as the pull) the module reads the
manifest (a manifest list or OCI index is narrowed to linux/amd64) and then the config blob; no layer is
fetched. The space check needs only the manifest, so an image too big for the disk is refused before any
blob is read. An image that is already present is checked from its local config instead.

Refused, before anything changes and in check mode too:

- an image whose CUDA version (``build.cuda``, else the ``CUDA_VERSION`` of its environment) is newer than the
  CUDA version that the host driver supports (what nvidia-smi reports is the driver's maximum), naming the
  driver branch to install;
- an image whose compressed size times ``EXTRACTION_FACTOR``, plus ``EXTRACTION_HEADROOM``, is more than the
  free space under Docker's data root;
- a ``smoke_input`` that does not fit the schema in the image's labels.

When the registry cannot be read (no answer, a refused login, an unknown manifest) the checks of that image
are skipped with a note: the pull that follows reports the real error.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urljoin

from ansible.module_utils.urls import open_url

from ansible_collections.homelab.gpu.plugins.module_utils import _cog
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_image
from ansible_collections.homelab.gpu.plugins.module_utils import _cog_schema
from ansible_collections.homelab.gpu.plugins.module_utils._common import command_error, free_bytes

CONFIG_LABEL = 'run.cog.config'
SCHEMA_LABEL = 'run.cog.openapi_schema'
VERSION_LABEL = 'run.cog.version'

# Layers are compressed in the registry. Docker keeps the download while it unpacks, and an unpacked layer of
# CUDA libraries, torch wheels or weights takes about twice its compressed size; so a pull needs about
# 2.5 times the compressed size, plus 1 GiB so that the disk is not left full.
EXTRACTION_FACTOR = 2.5
EXTRACTION_HEADROOM = 1 << 30

MEDIA_INDEX = ('application/vnd.oci.image.index.v1+json',
               'application/vnd.docker.distribution.manifest.list.v2+json')
MEDIA_MANIFEST = ('application/vnd.oci.image.manifest.v1+json',
                  'application/vnd.docker.distribution.manifest.v2+json')
ACCEPT = ', '.join(MEDIA_INDEX + MEDIA_MANIFEST)
PLATFORM = ('linux', 'amd64')

# The oldest Linux driver of each CUDA toolkit (NVIDIA's CUDA release notes, "CUDA Toolkit and Corresponding
# Driver Versions", the GA release of each). The branch is the driver's first number.
CUDA_MIN_DRIVER = (
    ((11, 0), '450.36.06'), ((11, 1), '455.23'), ((11, 2), '460.27.03'), ((11, 3), '465.19.01'),
    ((11, 4), '470.42.01'), ((11, 5), '495.29.05'), ((11, 6), '510.39.01'), ((11, 7), '515.43.04'),
    ((11, 8), '520.61.05'), ((12, 0), '525.60.13'), ((12, 1), '530.30.02'), ((12, 2), '535.54.03'),
    ((12, 3), '545.23.06'), ((12, 4), '550.54.14'), ((12, 5), '555.42.02'), ((12, 6), '560.28.03'),
    ((12, 8), '570.26'), ((12, 9), '575.51.03'), ((13, 0), '580.65.06'),
)

_CUDA_RE = re.compile(r'([0-9]+)\.([0-9]+)(?:\.[0-9]+)*')
_CHALLENGE_RE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)="([^"]*)"')
_DIGEST_RE = re.compile(r'sha256:[0-9a-f]{64}')
_LOOPBACK = ('localhost', '127.0.0.1', '::1', '[::1]')
# Seconds that docker info may take when pre-flight asks for Docker's data root.
INFO_TIMEOUT = 60


class RegistryError(Exception):
    """The registry could not be read; the message says why."""


# ---------------------------------------------------------------- plain parts

def location(image):
    """Where the registry API finds ``image``: ``{host, repository, reference, scheme}``.

    Docker Hub names go to ``registry-1.docker.io`` with ``library/`` for official images. A loopback
    registry is reached over plain HTTP, as Docker itself does.
    """
    parts = _cog_image.parse_image(image)
    name = parts['name']
    registry = _cog_image.registry_of(name)
    repository = name[len(registry) + 1:] if name.startswith(registry + '/') else name
    if registry == 'docker.io':
        registry = 'registry-1.docker.io'
        if '/' not in repository:
            repository = 'library/' + repository
    host = registry.rsplit(':', 1)[0] if not registry.startswith('[') else registry.split(']')[0] + ']'
    scheme = 'http' if host in _LOOPBACK else 'https'
    return {'host': registry, 'repository': repository, 'reference': parts['digest'] or parts['tag'],
            'scheme': scheme}


def parse_challenge(header):
    """``(scheme, params)`` of a ``WWW-Authenticate`` header: ``('bearer', {'realm': ..., 'service': ...})``."""
    header = (header or '').strip()
    scheme, _sep, rest = header.partition(' ')
    return scheme.lower(), dict(_CHALLENGE_RE.findall(rest))


def pick_platform(index, platform=PLATFORM):
    """The descriptor of ``platform`` (os, architecture) in a manifest list or OCI index, or None."""
    for entry in index.get('manifests') or []:
        plat = entry.get('platform') or {}
        if (plat.get('os'), plat.get('architecture')) == platform:
            return entry
    return None


def image_size(manifest):
    """Compressed size in bytes of an image manifest: its layers and its config."""
    total = 0
    for entry in (manifest.get('layers') or []) + [manifest.get('config') or {}]:
        size = entry.get('size')
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            total += size
    return total


def parse_cuda(text):
    """``(major, minor)`` of a CUDA version such as ``12.1``, ``12.1.1`` or ``cuda>=12.1``, or None."""
    match = _CUDA_RE.search(text or '') if isinstance(text, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def cog_facts(config):
    """What the image's config (``docker image inspect``'s ``Config``, or the blob's ``config``) says.

    ``{cog_version, gpu, cuda, cuda_from, schema}``: ``gpu`` from cog.yaml's ``build.gpu`` (None when the image
    has no ``run.cog.config``), ``cuda`` as text from ``build.cuda``, else from the image's ``CUDA_VERSION``
    environment (NVIDIA's base images set it), ``schema`` the OpenAPI schema text or None.
    """
    config = config or {}
    labels = config.get('Labels') or {}
    env = dict(e.split('=', 1) for e in config.get('Env') or [] if '=' in e)
    build = None
    try:
        build = (json.loads(labels[CONFIG_LABEL]) or {}).get('build') or {}
    except (KeyError, ValueError, TypeError, AttributeError):
        build = None
    facts = {'cog_version': labels.get(VERSION_LABEL), 'gpu': None, 'cuda': None, 'cuda_from': None,
             'schema': labels.get(SCHEMA_LABEL) or None}
    if build is not None:
        facts['gpu'] = bool(build.get('gpu'))
        if build.get('cuda'):
            facts.update(cuda=str(build['cuda']), cuda_from='%s build.cuda' % CONFIG_LABEL)
    if facts['cuda'] is None and env.get('CUDA_VERSION'):
        facts.update(cuda=env['CUDA_VERSION'], cuda_from='CUDA_VERSION of the image')
    return facts


def driver_for(cuda):
    """``(branch, oldest driver)`` that supports CUDA ``(major, minor)``, or None past the table."""
    for version, driver in CUDA_MIN_DRIVER:
        if version >= cuda:
            return driver.split('.', maxsplit=1)[0], driver
    return None


def cuda_problem(where, image, image_cuda, host_cuda, driver_version):
    """The refusal when the image needs a newer CUDA than the host driver supports, else None."""
    need, have = parse_cuda(image_cuda), parse_cuda(host_cuda)
    if need is None or have is None or need <= have:
        return None
    branch = driver_for(need)
    if branch:
        fix = 'install driver branch %s or newer (%s at least; nvidia_driver_branch: "%s")' % (
            branch[0], branch[1], branch[0])
    else:
        fix = 'install a driver branch newer than %s whose nvidia-smi reports CUDA %d.%d or later' % (
            CUDA_MIN_DRIVER[-1][1].split('.', maxsplit=1)[0], need[0], need[1])
    return ('%s: image %s needs CUDA %s, but the host driver %s supports CUDA %s at most: %s'
            % (where, image, image_cuda, driver_version or 'unknown', host_cuda, fix))


def space_needed(size):
    return int(size * EXTRACTION_FACTOR) + EXTRACTION_HEADROOM


def gib(size):
    return '%.1f GiB' % (size / float(1 << 30))


def space_problem(where, image, size, free, root, planned=0):
    """The refusal when the pull cannot fit under Docker's data root, else None.

    ``planned`` is what the images pulled before this one in the same run need.
    """
    needed = space_needed(size)
    if free is None or needed + planned <= free:
        return None
    left = ' once the images before it are pulled' if planned else ''
    return ('%s: image %s is %s compressed; pulling it needs about %s (%.1f times that, plus %s), but %s has '
            '%s free%s' % (where, image, gib(size), gib(needed), EXTRACTION_FACTOR, gib(EXTRACTION_HEADROOM),
                           root, gib(max(0, free - planned)), left))


def smoke_problems(where, image, schema_text, smoke_input, mode):
    """The refusals of ``smoke_input`` by the schema in the image's labels."""
    if smoke_input is None or not schema_text or mode == 'raw':
        return []
    schema, note = _cog_schema.parse_schema(schema_text, 'label %s' % SCHEMA_LABEL)
    if schema is None:
        return []
    errors = _cog_schema.fit(_cog_schema.input_fields(schema), smoke_input, mode)[2]
    return ['%s.smoke_input does not fit the schema of image %s: %s' % (where, image, e) for e in errors]


# ---------------------------------------------------------------- the registry

class Registry:
    """Read manifests and blobs over the Registry HTTP API v2, with Basic or Bearer token auth."""

    def __init__(self, auths, timeout=30, validate_certs=True):
        # {registry host: (username, password)}, as cog_model's registry_auths.
        self.auths = dict((a['registry'], (a['username'], a['password'])) for a in auths or [])
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.tokens = {}

    def credentials(self, host):
        for key in (host, 'https://' + host, 'docker.io' if host == 'registry-1.docker.io' else None):
            if key in self.auths:
                return self.auths[key]
        return None

    def _open(self, url, headers):
        """``(status, headers, body bytes)``; raise RegistryError when there is no answer."""
        try:
            resp = open_url(url, method='GET', headers=headers, timeout=self.timeout, use_proxy=False,
                            follow_redirects='none', validate_certs=self.validate_certs)
            return resp.getcode(), resp.headers, resp.read()
        except HTTPError as exc:
            try:
                body = exc.read()
            except Exception:  # pylint: disable=broad-except
                body = b''
            return exc.code, exc.headers, body
        except (URLError, socket.error, OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, 'reason', exc)
            raise RegistryError('no answer from %s: %s' % (url.split('?')[0], str(reason) or exc.__class__.__name__))

    def _basic(self, host):
        cred = self.credentials(host)
        if cred is None:
            return None
        return 'Basic ' + base64.b64encode(('%s:%s' % cred).encode('utf-8')).decode('ascii')

    def _token(self, host, params, scope):
        realm = params.get('realm') or ''
        if not realm.startswith(('https://', 'http://')):
            raise RegistryError('the registry %s asks for a token at %r, which is not a URL' % (host, realm))
        query = {'service': params.get('service', host), 'scope': params.get('scope', scope)}
        headers = {}
        basic = self._basic(host)
        if basic:
            headers['Authorization'] = basic
        code, _headers, body = self._open(realm + ('&' if '?' in realm else '?') + urlencode(query), headers)
        if code != 200:
            raise RegistryError('the token service %s refused (HTTP %s)%s' % (
                realm, code, '' if basic else '; registry_auths has no credentials for %s' % host))
        token = _json(body, 'the answer of the token service %s' % realm)
        token = token.get('token') or token.get('access_token')
        if not token:
            raise RegistryError('the token service %s gave no token' % realm)
        return 'Bearer ' + token

    def get(self, loc, path, accept=None):
        """GET ``/v2/<repository>/<path>``, answering an auth challenge once; return the body.

        A redirect (blobs often live on a storage service) is followed without the registry's Authorization.
        """
        url = '%s://%s/v2/%s/%s' % (loc['scheme'], loc['host'], loc['repository'], path)
        scope = 'repository:%s:pull' % loc['repository']
        key = (loc['host'], scope)
        headers = {'Accept': accept} if accept else {}
        if key in self.tokens:
            headers['Authorization'] = self.tokens[key]
        code, resp_headers, body = self._open(url, headers)
        if code == 401:
            scheme, params = parse_challenge(resp_headers.get('WWW-Authenticate') if resp_headers else '')
            if scheme == 'bearer':
                self.tokens[key] = self._token(loc['host'], params, scope)
            elif scheme == 'basic' and self._basic(loc['host']):
                self.tokens[key] = self._basic(loc['host'])
            else:
                raise RegistryError('%s asks for a login, and registry_auths has no credentials for %s'
                                    % (url, loc['host']))
            headers['Authorization'] = self.tokens[key]
            code, resp_headers, body = self._open(url, headers)
        if code in (301, 302, 303, 307, 308) and resp_headers and resp_headers.get('Location'):
            target = urljoin(url, resp_headers['Location'])
            code, resp_headers, body = self._open(target, {'Accept': accept} if accept else {})
        if code != 200:
            raise RegistryError('%s answered HTTP %s: %s' % (url, code, body.decode('utf-8', 'replace')[:200]))
        return body

    def manifest(self, loc):
        """The image manifest for linux/amd64, following a manifest list or OCI index."""
        data = _json(self.get(loc, 'manifests/' + loc['reference'], ACCEPT), 'the manifest of %s' % loc['repository'])
        if data.get('mediaType') in MEDIA_INDEX or ('manifests' in data and 'layers' not in data):
            entry = pick_platform(data)
            if entry is None or not _DIGEST_RE.fullmatch(str(entry.get('digest'))):
                raise RegistryError('the image has no %s/%s manifest' % PLATFORM)
            data = _json(self.get(loc, 'manifests/' + entry['digest'], ACCEPT), 'the %s/%s manifest of %s' % (PLATFORM + (loc['repository'],)))
        if not isinstance(data.get('layers'), list):
            raise RegistryError('the manifest of %s lists no layers (schema version %s)'
                                % (loc['repository'], data.get('schemaVersion')))
        return data

    def config(self, loc, manifest):
        """The image config blob (its ``config`` part holds Labels and Env)."""
        digest = str((manifest.get('config') or {}).get('digest'))
        if not _DIGEST_RE.fullmatch(digest):
            raise RegistryError('the manifest of %s has no config digest' % loc['repository'])
        return _json(self.get(loc, 'blobs/' + digest), 'the config of %s' % loc['repository'])


def _json(body, what):
    try:
        data = json.loads(body.decode('utf-8', 'replace'))
    except ValueError:
        raise RegistryError('%s is not JSON' % what)
    if not isinstance(data, dict):
        raise RegistryError('%s is not a JSON object' % what)
    return data


# ---------------------------------------------------------------- the pre-flight

def local_config(entry):
    """``(present, Config or None)`` from ``docker image inspect`` of a local image (None when it is absent);
    Config is None when the answer has none."""
    if entry is None:
        return False, None
    config = entry.get('Config') if isinstance(entry, dict) else None
    return True, (config if isinstance(config, dict) else None)


def free_space(run, module, docker):
    """``(Docker's data root, free bytes, error)``; ``(None, None, None)`` when docker info does not say, and
    ``(None, None, why)`` when it failed or timed out, so that the check can say why the space went unchecked."""
    cmd = run(module, [docker, 'info', '--format', '{{.DockerRootDir}}'], timeout=INFO_TIMEOUT)
    if cmd.rc != 0:
        return None, None, command_error('docker info', cmd)
    root = cmd.stdout.strip()
    if not root.startswith('/'):
        return None, None, None
    return root, free_bytes(root), None


def preflight(module, docker, models, gpu_info, run, inspect_image):
    """Check every image to start; return ``(errors, checks)``. Changes nothing, so check mode runs it too.

    ``gpu_info`` is a function that returns nvidia_smi_info's result (called only when an image needs CUDA);
    ``run`` runs docker as _common.run_command does (``run(module, argv, timeout=...)``); ``inspect_image(ref)``
    returns ``docker image inspect`` of a local image as a dict, None when it is absent.
    ``checks`` has one entry per image: ``{image, source, size, cuda, schema, note}``.
    """
    params = module.params
    registry = Registry(params.get('registry_auths'))
    host = {}
    mode = params.get('smoke_schema') or 'coerce'
    errors, checks, seen, space = [], [], {}, {}
    for i, model in enumerate(models):
        image = model.get('image')
        if model.get('state') != 'started' or not image:
            continue
        where = 'models[%d] (%s)' % (i, model['name'])
        if image not in seen:
            check = {'image': image, 'source': None, 'size': None, 'cuda': None, 'schema': False, 'note': None}
            seen[image] = (check, _read(run, module, docker, registry, image, where, check, space, errors,
                                        inspect_image))
            checks.append(check)
        check, facts = seen[image]
        if facts is None:
            continue
        wants_gpu = _cog.normalize_gpus(model.get('gpus')) != 'none'
        if wants_gpu and facts['cuda'] and facts['gpu'] is not False:
            if not host:
                host.update(gpu_info() or {'state': None})
            problem = cuda_problem(where, image, facts['cuda'], host.get('cuda_version'), host.get('driver_version'))
            if problem:
                errors.append(problem)
        errors += smoke_problems(where, image, facts['schema'], model.get('smoke_input'), mode)
    return errors, checks


def _read(run, module, docker, registry, image, where, check, space, errors, inspect_image):
    """The cog facts of one image, from its local config or from the registry; None when unread or refused."""
    present, config = local_config(inspect_image(image))
    if present:
        check['source'] = 'local'
        if config is None:
            check['note'] = 'not checked: docker image inspect gave no config'
            return None
    else:
        try:
            loc = location(image)
            manifest = registry.manifest(loc)
            check.update(source='registry', size=image_size(manifest))
            if 'root' not in space:
                space['root'], space['free'], space['error'] = free_space(run, module, docker)
                space['planned'] = 0
            if space['error']:
                check['note'] = 'free space not checked before the pull: %s' % space['error']
            problem = space_problem(where, image, check['size'], space['free'], space['root'], space['planned'])
            if problem:
                # Refused on the manifest alone: no blob is read.
                errors.append(problem)
                return None
            space['planned'] += space_needed(check['size'])
            config = (registry.config(loc, manifest).get('config') or {})
        except (RegistryError, ValueError) as exc:
            check['note'] = 'not checked before the pull: %s' % exc
            return None
    facts = cog_facts(config)
    check.update(cuda=facts['cuda'], schema=bool(facts['schema']))
    return facts
