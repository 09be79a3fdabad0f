from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class IamConfig(AppConfig):
    default = True
    name = "iam"
    verbose_name = "Authorization"

    def ready(self) -> None:
        from iam import reauth  # noqa: F401 - connects the sign-in receiver


class IamAdminConfig(admin_apps.AdminConfig):
    """Django's admin with the console's own site (``iam.admin_site``)."""

    default = False
    default_site = "iam.admin_site.IamAdminSite"
