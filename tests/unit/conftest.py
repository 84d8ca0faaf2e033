# Unit tests import the collection as ansible_collections.homelab.gpu; tests/run.sh runs them
# from a tree laid out that way.
