# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image references as Docker reads them, and the registry credentials of the docker CLI. Private.

The rules are those of Docker's distribution/reference: a registry host, path components, a tag, a digest.
"""

from __future__ import annotations

import base64
import json
import re

_DIGEST_RE = re.compile(r'sha256:[0-9a-f]{64}')
# distribution/reference: a path component, a registry host (name or [IPv6], optional port) and a tag.
_REPO_COMPONENT_RE = re.compile(r'[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*')
DOMAIN_RE = re.compile(r'(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
                       r'(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*'
                       r'|\[[a-fA-F0-9:]+\])(?::[0-9]+)?')
_TAG_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}')
# Longest image name (registry and path) that Docker takes (distribution/reference: NameTotalLengthMax).
_NAME_MAX = 255


def parse_image(ref):
    """Split an image reference into ``{'name', 'tag', 'digest'}``; raise ValueError when it is not one.

    ``name`` keeps the registry (``r8.im/meta/llama-2-7b-chat``). ``tag`` is None when only a digest is given;
    neither given means Docker's implicit ``latest`` and comes back as tag ``latest``. Refuses what
    ``docker pull`` would refuse, and digests other than sha256.
    """
    if not isinstance(ref, str) or not ref or any(c.isspace() for c in ref):
        raise ValueError('is not an image reference')
    rest, digest = ref, None
    if '@' in ref:
        rest, digest = ref.split('@', 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise ValueError('has a malformed digest %r (want sha256: and 64 hex digits)' % digest)
    tag = None
    last = rest.rsplit('/', 1)[-1]
    if ':' in last:
        rest, tag = rest.rsplit(':', 1)
        if not _TAG_RE.fullmatch(tag):
            raise ValueError('has a malformed tag %r (letters, digits, _ . -, not starting with . or -; at most '
                             '128)' % tag)
    parts = rest.split('/')
    if not rest or any(not p for p in parts):
        raise ValueError('has an empty name')
    if len(rest) > _NAME_MAX:
        raise ValueError('has a name of %d characters, more than the %d that Docker takes' % (len(rest), _NAME_MAX))
    first = parts[0]
    has_registry = len(parts) > 1 and ('.' in first or ':' in first or first == 'localhost')
    if has_registry and not DOMAIN_RE.fullmatch(first):
        raise ValueError('has an invalid registry host %r (a host name or IP address, optional :port)' % first)
    for part in parts[1:] if has_registry else parts:
        if not _REPO_COMPONENT_RE.fullmatch(part):
            raise ValueError('has an invalid repository path component %r (lowercase letters, digits, . _ -)' % part)
    if digest is None and tag is None:
        tag = 'latest'
    return {'name': rest, 'tag': tag, 'digest': digest}


def registry_of(image_name):
    """Registry host of an image name as docker login names it (Docker Hub: ``docker.io``)."""
    first = image_name.split('/', 1)[0]
    if '/' in image_name and ('.' in first or ':' in first or first == 'localhost'):
        return first
    return 'docker.io'


def auth_matches(config_text, registry, username, password):
    """Whether a docker ``config.json`` already holds exactly these credentials for ``registry``."""
    try:
        data = json.loads(config_text or '{}')
    except ValueError:
        return False
    want = base64.b64encode(('%s:%s' % (username, password)).encode('utf-8')).decode('ascii')
    auths = (data or {}).get('auths') or {}
    keys = [registry]
    if registry in ('docker.io', 'index.docker.io', 'registry-1.docker.io'):
        keys.append('https://index.docker.io/v1/')
    for key in keys:
        entry = auths.get(key) or auths.get('https://' + key) or {}
        if entry.get('auth') == want:
            return True
    return False
