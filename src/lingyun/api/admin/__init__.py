"""``/admin/v1``: the control plane over HTTP (the CLI's twin; one service layer).

Log in with ``POST /admin/v1/auth/login`` and send the token as a bearer token. What a
caller may see and change is decided by :mod:`lingyun.tenancy.roles`.

``router.py`` gathers every module's routes (the package itself imports none of them).
"""
