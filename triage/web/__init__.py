"""The Chinese web UI for the dispatcher, the units' staff and the manager (server-rendered Jinja2).

Why plain server-rendered pages: the office intranet forbids CDNs, so every asset must come from this app, and
the team keeps no vendored copies of third-party front-end libraries. A front-end framework (or HTMX) would
have to be vendored or built; plain HTML forms with POST → redirect → GET need neither, work in any browser
the office has, and keep all logic in the Python domain functions the API already uses. A few lines of our own
JavaScript (``static/app.js``) only add comfort where it clearly helps — select-all for bulk accept, a live
countdown for deadlines within the day, a periodic queue refresh, filtering the subtype list by type — and
every page works without it. The weekly trend chart is inline SVG drawn on the server.

Entry point: ``mount_web(app)`` (called by ``triage.api.app.create_app``) adds the pages and ``/static``.
Pages: ``/`` (queue), ``/complaints/new``, ``/complaints/{id}``, ``/dashboard`` (+ ``/dashboard.csv``),
``/report``, ``/knowledge``, ``/import``. First start with ``settings.demo_data`` and an empty database loads
``knowledge/demo/complaints.yaml`` (``triage.web.demo``).
"""
