"""The console's breadcrumbs name the menu a page is in (``iam.admin_site.MENUS``),
not the Django app that holds its model."""

from django import template
from django.utils.text import capfirst

from iam.admin_site import entry_name, menu_of

register = template.Library()


@register.simple_tag
def console_menu(opts) -> str:
    return menu_of(opts.app_label, opts.object_name) or str(opts.app_config.verbose_name)


@register.simple_tag
def console_entry(opts) -> str:
    """The menu entry's name of a model's list ("Audit trail")."""
    return entry_name(opts.app_label, opts.object_name) or capfirst(opts.verbose_name_plural)
