# ruff: noqa: E501  (HTML templates read better unwrapped)
"""The DPO console's templates (Jinja2, autoescaped) and its one stylesheet: no script, no
remote asset, so the Content-Security-Policy can forbid both."""

from __future__ import annotations

__all__ = ["CSS", "TEMPLATES"]

CSS = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .5rem; text-align: left; }
.overdue { color: #a00; font-weight: bold; }
form.inline { display: inline; }
code { font-size: 13px; }
.msg { background: #eef; padding: .5rem; }
div.who, div.model { margin: .5rem 0; }
"""

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lethe console</title>
<link rel="stylesheet" href="/console/style.css"></head>
<body>{% block body %}{% endblock %}</body></html>"""

_LOGIN = """{% extends "base.html" %}{% block body %}
<h1>Lethe console</h1>
{% if error %}<p class="msg" id="error">{{ error }}</p>{% endif %}
<form method="post" action="/console/login" id="login">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Token <input type="password" name="token" id="token" autocomplete="off"></label>
<button type="submit">Log in</button></form>
{% endblock %}"""

_HEADER = """<h1>Lethe console</h1>
<div class="who">Signed in as <b id="who">{{ principal.name }}</b> (<span id="role">{{ principal.role }}</span>).
<form class="inline" method="post" action="/console/logout">
<input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">Log out</button></form>
<a href="/console">Requests</a></div>"""

_DENIED = """{% extends "base.html" %}{% block body %}
{% with principal=session.principal, csrf=session.csrf %}{% include "header.html" %}{% endwith %}
<p class="msg" id="error">{{ error }}</p>
{% endblock %}"""

_HOME = """{% extends "base.html" %}{% block body %}
{% include "header.html" %}
{% if message %}<p class="msg" id="message">{{ message }}</p>{% endif %}
<p>Log head: size <b id="log-size">{{ head_size }}</b>, root <code id="log-root">{{ head_root }}</code>
(<a href="/console/checkpoint" id="checkpoint">signed checkpoint</a>).
Auditor report: <a href="/console/report.html" id="report-html">HTML</a>, <a href="/console/report.pdf" id="report-pdf">PDF</a>
{% if principal.role == "operator" %}; <a href="/console/bundle.zip" id="bundle">auditor bundle (zip)</a>{% endif %}.</p>
<h2>Requests</h2>
<form method="get" action="/console">
<label>Status <select name="status"><option value="">any</option>
{% for s in statuses %}<option value="{{ s }}"{% if s == status %} selected{% endif %}>{{ s }}</option>{% endfor %}
</select></label>
<label><input type="checkbox" name="overdue" value="1"{% if overdue %} checked{% endif %}> overdue only</label>
<label>Sort <select name="sort">{% for k in ("received", "due") %}
<option value="{{ k }}"{% if k == sort %} selected{% endif %}>{{ k }}</option>{% endfor %}</select></label>
<button type="submit">Filter</button></form>
<table id="requests"><tr><th>Request</th><th>Model</th><th>Classes</th><th>Status</th>
<th>Due</th><th>Commitment</th><th>Filed by</th><th>Decided by</th><th></th></tr>
{% for r in requests %}<tr id="row-{{ r.id }}">
<td>{{ r.id }}</td><td>{{ r.model }}</td><td>{{ r.class_names|join(", ") }}</td>
<td class="status">{{ r.status }}{% if r.depth %} ({{ r.depth }}){% endif %}</td>
<td{% if r.overdue %} class="overdue"{% endif %}>{{ r.due_at.strftime("%Y-%m-%d") }}{% if r.overdue %} OVERDUE{% endif %}</td>
<td><code>{{ r.subject_commitment[:24] }}…</code></td><td>{{ r.filed_by or "" }}</td><td>{{ r.decided_by or "" }}</td>
<td>{% if principal.role == "dpo" and r.status in ("received", "failed") %}
<form class="inline approve" method="post" action="/console/requests/{{ r.id }}/approve">
<input type="hidden" name="csrf" value="{{ csrf }}"><input name="reason" placeholder="reason">
<button type="submit">Approve</button></form>{% endif %}
{% if principal.role == "dpo" and r.status in ("received", "approved", "failed") %}
<form class="inline reject" method="post" action="/console/requests/{{ r.id }}/reject">
<input type="hidden" name="csrf" value="{{ csrf }}"><input name="reason" placeholder="reason" required>
<button type="submit">Reject</button></form>{% endif %}
{% if principal.role == "dpo" and not r.shredded_at %}
<form class="inline shred" method="post" action="/console/requests/{{ r.id }}/shred">
<input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">Shred key</button></form>{% endif %}
{% if r.status in ("applied", "superseded") %}<a class="receipt" href="/console/requests/{{ r.id }}/receipt">receipt</a>{% endif %}
</td></tr>{% endfor %}</table>
{% if principal.role == "operator" %}<h2>Apply and erase</h2>{% for m in models %}
<div class="model" id="model-{{ m }}"><b>{{ m }}</b>
<form class="inline apply" method="post" action="/console/models/{{ m }}/apply">
<input type="hidden" name="csrf" value="{{ csrf }}">
<select name="phase"><option value="mask">mask (seconds)</option><option value="both">mask + erase (minutes)</option></select>
<button type="submit">Apply</button></form>
<form class="inline erase" method="post" action="/console/models/{{ m }}/erase">
<input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">Erase (phase 2, minutes)</button></form></div>
{% endfor %}{% endif %}
<h2>Applies</h2>
<p>A passed mask is <i>masked, not yet erased</i>: the filter hides the classes, the weights still hold them; only a passed erase is <i>erased</i>.</p>
<table id="applies"><tr><th>Apply</th><th>Model</th><th>Phase</th><th>Verdict</th><th>Deployed</th>
<th>Forget acc.</th><th>Retain acc.</th><th>Relearn</th><th>Depth</th><th>Requests</th><th>By</th><th>Finished</th></tr>
{% for a in applies %}<tr id="apply-{{ a.id }}">
<td>{{ a.id }}</td><td>{{ a.model }}</td><td class="phase">{{ a.phase }}</td>
<td class="verdict">{{ a.verdict }}{% for x in a.reasons %}<br><small>{{ x }}</small>{% endfor %}</td>
<td class="state">{{ a.state }}</td><td class="forget">{{ a.forget }}</td><td class="retain">{{ a.retain }}</td>
<td class="relearn">{{ a.relearn }}</td><td class="depth">{{ a.depth }}</td><td>{{ a.requests }}</td>
<td class="by">{{ a.by }}</td><td>{{ a.at }}</td></tr>{% endfor %}</table>
{% endblock %}"""

TEMPLATES = {
    "base.html": _BASE,
    "login.html": _LOGIN,
    "header.html": _HEADER,
    "home.html": _HOME,
    "denied.html": _DENIED,
}
