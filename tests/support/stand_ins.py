"""Stand-ins for the parts a test does not exercise."""


class NoService:
    """The service's methods, never called here (building the HTTP app needs a service)."""

    draining = False

    def __getattr__(self, name):
        async def unused(request, ctx):
            raise AssertionError(f"{name} called")
        return unused
