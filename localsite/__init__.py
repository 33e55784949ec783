"""The site on one machine: the embedded servers (pouchdb-server, Redis), `make run`'s launcher, and the demo pools
that real workers make. The domain (tokens/) and the site's pages never import it; `manage.py seed_demo`, the
tests and the benchmark do."""
