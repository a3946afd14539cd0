"""Server-side syntax highlighting with Pygments (which escapes the code it renders)."""

from django import template
from django.utils.safestring import mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

register = template.Library()
_FORMATTER = HtmlFormatter(cssclass="code", wrapcode=True)


@register.filter
def highlight_code(code: str, language: str = "") -> str:
    """Render code as highlighted HTML; unknown languages fall back to plain (escaped) text."""
    try:
        lexer = get_lexer_by_name(language or "text")
    except ClassNotFound:
        lexer = TextLexer()
    return mark_safe(highlight(code or "", lexer, _FORMATTER))  # noqa: S308 — Pygments escapes its input
