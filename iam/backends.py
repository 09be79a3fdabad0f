import unicodedata

from django.contrib.auth.backends import ModelBackend
from django.db.models import Q

from iam.models import User


class UsernameOrEmailBackend(ModelBackend):
    """Sign in with a username or an email address (both case-insensitive)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None or password is None:
            return None
        # As the sign-in form and its limits (iam.signin) name the account.
        identifier = unicodedata.normalize("NFKC", username).strip()
        user = User.objects.filter(Q(username__iexact=identifier) | Q(email__iexact=identifier)).first()
        if user is None:
            # Hash anyway so an unknown login takes as long as a wrong password.
            User().set_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None
