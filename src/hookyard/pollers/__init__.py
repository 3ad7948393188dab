"""The REST side: polling APIs without webhooks, reconciling webhook streams against the API,
backfilling history, and fetching an object's current state.

api.py reads pages (pure), client.py calls the API politely, poll.py and jobs.py turn pages into
events committed with their checkpoint (store/rest.py), runner.py runs each job under a lease.
"""
