"""A fit as HTML, for notebooks (``Fit._repr_html_``): model, data, priors, posterior table
and diagnostics, from one jinja2 template with semantic markup and no JavaScript."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .fit import Fit

__all__ = ["fit_html"]

_TEMPLATE = """\
<section class="hierlm-fit">
  <h3>hierlm fit: <code>{{ formula }}</code></h3>
  <p>
    family: {{ family }} &middot; pooling: {{ pooling }} &middot; engine: {{ engine }}
    &middot; rows: {{ "{:,}".format(rows) }}
    {% if levels %}&middot; groups: {{ levels }}{% endif %}
    &middot; {{ chains }} chains &times; {{ draws }} draws (tune {{ tune }}, seed {{ seed }})
  </p>
  {% if notes %}
  <ul class="hierlm-notes">
    {% for note in notes %}<li>{{ note }}</li>{% endfor %}
  </ul>
  {% endif %}
  <details>
    <summary>Priors (original scale)</summary>
    <table>
      <thead><tr><th>parameter</th><th>prior</th><th>source</th></tr></thead>
      <tbody>
        {% for p in priors %}
        <tr><td>{{ p.parameter }}</td><td>{{ p.prior }}</td><td>{{ p.source }}</td></tr>
        {% endfor %}
      </tbody>
    </table>
  </details>
  {{ table | safe }}
  {% if n_group_coefs %}
  <p><small>{{ "{:,}".format(n_group_coefs) }} group coefficients (<code>beta_&lt;level&gt;</code>)
  are in <code>fit.idata</code>; <code>fit.summary(groups=True)</code> lists them.</small></p>
  {% endif %}
  <h4>Diagnostics</h4>
  <p>{{ convergence }}</p>
  <ul class="hierlm-diagnostics">
    {% for f in findings %}<li><strong>{{ f.severity }}:</strong> {{ f.text }}</li>{% endfor %}
  </ul>
</section>
"""


def fit_html(fit: Fit) -> str:
    """The fit's summary as an HTML fragment (escaped; the table is pandas' own HTML)."""
    import jinja2

    d, info = fit.design, fit.info
    levels = ", ".join(
        f"{name}: {len(labels):,}"
        for name, labels in zip(d.level_names, d.level_labels, strict=True)
    )
    table = fit.summary().to_html(float_format=lambda x: f"{x:.3f}", border=0)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE).render(
        formula=d.spec.formula,
        family=d.spec.family,
        pooling=d.spec.pooling,
        engine="collapsed (exact)" if info.engine == "collapsed" else "full latent",
        rows=info.n_rows,
        levels=levels,
        chains=info.chains,
        draws=info.draws,
        tune=info.tune,
        seed=info.seed,
        notes=fit.notes(),
        priors=info.priors,
        table=table,
        n_group_coefs=sum(len(labels) for labels in d.level_labels) * len(d.coef_names),
        convergence=str(fit.convergence()),
        findings=[{"severity": f.severity, "text": str(f)} for f in fit.diagnose()],
    )
