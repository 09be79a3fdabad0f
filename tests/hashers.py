from django.contrib.auth.hashers import Argon2PasswordHasher


class FastArgon2PasswordHasher(Argon2PasswordHasher):
    """Real Argon2 with test-sized costs, so seeding users takes milliseconds."""

    time_cost = 1
    memory_cost = 1024
    parallelism = 1
