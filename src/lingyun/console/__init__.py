"""The web console at ``/console``: server-rendered pages over the same services as the
admin API and the CLI, in English and Chinese, with one small script and stylesheet.

``mount.install(app)`` mounts the pages and assets, serves Swagger UI at ``/docs`` from local
copies, and redirects ``/`` here; ``mount.start`` runs in
the app's lifespan: it opens the first-start setup link when there is no user yet and
prints the serve banner.
"""
