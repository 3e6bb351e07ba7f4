"""The Enode API client (part of the foundation: the worker's look-ups and reconcile, and the operator's
commands, use it).

    client     httpx client: OAuth2 client credentials (auth), retries with backoff, pagination
    errors     the exception tree (transient vs permanent), problem+json parsed
    assets     GET vehicles / chargers
    locations  pairing guide step 2: the user's home Location, assigned to the charger (idempotent)
    webhooks   create (generated secret), show, test, rotate the secret
    session    one client for a `plugwatch enode ...` command: not configured -> exit 2, an API error -> exit 1

Everything here is optional: without ENODE_CLIENT_ID / ENODE_CLIENT_SECRET the commands that need the API say
so (exit status 2), look-ups are off, and the rest of plugwatch is unaffected.
"""
