"""Enode API access, and what plugwatch does with it.

    client     httpx client: OAuth2 client credentials (auth), retries with backoff, pagination
    errors     the exception tree (transient vs permanent), problem+json parsed
    assets     GET vehicles / chargers
    locations  pairing guide step 2: the user's home Location, assigned to the charger (idempotent)
    webhooks   create (generated secret), show, test, rotate the secret
    observe    API objects -> the webhook events they stand for -> the worker core and store
    reconcile  page every charger and vehicle through `observe`: the transitions webhooks missed
    prune      reconcile's optional step: devices Enode no longer lists were deleted
    lookup     fetch a charger a vehicle names but plugwatch has never seen
    suggest    when to suggest a reconcile (heartbeats stopped, pendingEvents high)
    hooks      the worker's entry points (look-up after a batch, advice in the pump)

Everything here is optional: without ENODE_CLIENT_ID / ENODE_CLIENT_SECRET the commands that need the API say
so (exit status 2), look-ups are off, and the rest of plugwatch is unaffected.
"""
