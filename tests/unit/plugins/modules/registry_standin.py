# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stand-in container registry on the loopback, for the tests of _registry and of cog_model's pre-flight.

A STAND-IN, not a registry: unit tests run without Docker or a registry daemon, so this small server speaks the
part of the Registry HTTP API v2 that a pre-flight uses: manifests (an OCI index that points to a linux/amd64
and a linux/arm64 manifest), blobs (redirected to a storage path, as registries do), and token auth through a
``WWW-Authenticate: Bearer`` challenge with Basic credentials at the token service. It logs every request, so
that a test can see which blobs were fetched (never a layer). Images are built by :func:`cog_image` with the
labels that ``cog build`` writes. The same checks against a real registry (Debian's docker-registry, with
Basic auth) run in the molecule scenario molecule/deploy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
USER, PASSWORD, TOKEN = 'lab', 's3cret-pass', 'token-for-lab'


def digest_of(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def cog_image(layer_sizes, build=None, schema=None, env=None):
    """``(index bytes, {digest: (media type, bytes)})`` of a cog image with labels as cog writes them."""
    labels = {'run.cog.version': '0.23.1', 'run.cog.has_init': 'true'}
    if build is not None:
        labels['run.cog.config'] = json.dumps({'build': build, 'predict': 'predict.py:Predictor'})
    if schema is not None:
        labels['run.cog.openapi_schema'] = schema
    config = json.dumps({'architecture': 'amd64', 'os': 'linux',
                         'config': {'Labels': labels, 'Env': env or ['PATH=/usr/bin']}}).encode()
    blobs = {digest_of(config): ('application/vnd.docker.container.image.v1+json', config)}
    manifest = json.dumps({
        'schemaVersion': 2, 'mediaType': DOCKER_MANIFEST,
        'config': {'mediaType': 'application/vnd.docker.container.image.v1+json', 'size': len(config),
                   'digest': digest_of(config)},
        'layers': [{'mediaType': 'application/vnd.docker.image.rootfs.diff.tar.gzip', 'size': size,
                    'digest': 'sha256:%064x' % (n + 1)} for n, size in enumerate(layer_sizes)],
    }).encode()
    other = json.dumps({'schemaVersion': 2, 'mediaType': DOCKER_MANIFEST, 'config': {'size': 1,
                        'digest': 'sha256:' + 'e' * 64}, 'layers': []}).encode()
    index = json.dumps({'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': [
        {'mediaType': DOCKER_MANIFEST, 'digest': digest_of(other), 'size': len(other),
         'platform': {'architecture': 'arm64', 'os': 'linux'}},
        {'mediaType': DOCKER_MANIFEST, 'digest': digest_of(manifest), 'size': len(manifest),
         'platform': {'architecture': 'amd64', 'os': 'linux'}},
    ]}).encode()
    manifests = {digest_of(manifest): (DOCKER_MANIFEST, manifest), digest_of(other): (DOCKER_MANIFEST, other),
                 digest_of(index): (OCI_INDEX, index)}
    return digest_of(index), manifests, blobs


class RegistryStandIn(BaseHTTPRequestHandler):
    """Serves ``repos``: {repository: (manifests by digest, blobs by digest)}; ``auth``: bearer, basic or none."""
    repos = {}
    auth = 'bearer'
    log = []

    def log_message(self, *args):
        pass

    def send(self, code, body=b'', media='application/json', headers=None):
        self.send_response(code)
        self.send_header('Content-Type', media)
        self.send_header('Content-Length', str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def authorized(self, repo):
        given = self.headers.get('Authorization')
        if self.auth == 'none':
            return True
        if self.auth == 'bearer' and given == 'Bearer ' + TOKEN:
            return True
        basic = 'Basic ' + base64.b64encode(('%s:%s' % (USER, PASSWORD)).encode()).decode()
        if self.auth == 'basic' and given == basic:
            return True
        port = self.server.server_port
        challenge = ('Bearer realm="http://127.0.0.1:%d/token",service="stand-in",scope="repository:%s:pull"'
                     % (port, repo) if self.auth == 'bearer' else 'Basic realm="stand-in"')
        self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', headers={'WWW-Authenticate': challenge})
        return False

    def do_GET(self):  # noqa: C901  pylint: disable=too-many-return-statements
        type(self).log.append((self.path, self.headers.get('Authorization')))
        path = self.path.split('?')[0]
        if path == '/token':
            basic = 'Basic ' + base64.b64encode(('%s:%s' % (USER, PASSWORD)).encode()).decode()
            if self.headers.get('Authorization') != basic:
                return self.send(401, b'{"details":"bad credentials"}')
            return self.send(200, json.dumps({'token': TOKEN}).encode())
        if path.startswith('/storage/'):
            for manifests_blobs in self.repos.values():
                found = manifests_blobs[1].get(path[len('/storage/'):])
                if found:
                    return self.send(200, found[1], found[0])
            return self.send(404)
        if not path.startswith('/v2/'):
            return self.send(404)
        rest = path[len('/v2/'):]
        for kind in ('/manifests/', '/blobs/'):
            if kind in rest:
                repo, ref = rest.split(kind, 1)
                break
        else:
            return self.send(404)
        if repo not in self.repos:
            return self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
        if not self.authorized(repo):
            return None
        manifests, blobs = self.repos[repo]
        if kind == '/manifests/':
            if ref not in manifests:
                return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
            return self.send(200, manifests[ref][1], manifests[ref][0])
        if ref not in blobs:
            return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
        return self.send(307, headers={'Location': '/storage/' + ref})


def start(repos, auth='bearer'):
    """Serve ``repos`` on 127.0.0.1; return ``(server, port)``. Call ``server.shutdown()`` to stop."""
    RegistryStandIn.repos = repos
    RegistryStandIn.auth = auth
    RegistryStandIn.log = []
    server = HTTPServer(('127.0.0.1', 0), RegistryStandIn)
    threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True).start()
    return server, server.server_port


def blob_gets():
    """The blob requests the stand-in saw (storage included)."""
    return [p for p, _auth in RegistryStandIn.log if '/blobs/' in p or p.startswith('/storage/')]
