"""Where a password is checked when it is not the database's.

``IdentityService.authenticate`` (``iam/service.py``) is the one sign-in seam that
``/v2/`` Basic, the token service, the REST API and the console call. It checks
``admin``, robots and every user under ``auth_mode: db_auth`` against the database;
under ``ldap_auth`` it asks :mod:`dockyard.iam.providers.ldap` for everyone else.
"""
