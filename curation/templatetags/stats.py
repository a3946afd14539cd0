"""Number formatting for the analytics pages."""

from django import template

register = template.Library()


@register.filter
def pct(value) -> str:
    """0.734 → "73%"; None (undefined) → "–"."""
    if value is None or value == "":
        return "–"
    return f"{float(value):.0%}"


@register.filter
def kappa(value) -> str:
    """Cohen's kappa to two decimals; None (undefined) → "–"."""
    if value is None or value == "":
        return "–"
    return f"{float(value):.2f}"
