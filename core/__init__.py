"""Infrastructure shared by every app: errors, HTTP, limits, API and console
building blocks, the identity-change hook. No domain models; imports no app."""
