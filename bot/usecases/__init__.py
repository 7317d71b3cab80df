"""The use cases of AccessBot, one module per concept, behind :class:`bot.workflow.Workflow`.

- ``deps``: the one frozen dependencies object (store, scheduler, clusters, policy,
  notifier, directory, clock, backoff, tunables) and shared helpers.
- ``authorization``: who may do what now (admin, enabled, decider, owner), audited refusals.
- ``requests``: submit, the approval card, approve, deny, cancel, time out; ``Decision``.
- ``provisioning``: the saga approved → objects, token, verify, deliver → active, or failed.
- ``credentials``: the grant's object spec, the verified kubeconfig, its delivery.
- ``ending``: revoke, expire, end, and the cleanup that deletes objects until proven gone.
- ``receipts``: the revocation receipt: checks on the cluster that access is gone.
- ``extensions``: more time on an active grant, directly or by an approved request.
- ``offboarding``: block a person, end all they hold, sweep the clusters, re-enable.
- ``reports``: the cluster reports (nodes, helm, standing) and who may run them.
- ``permissions``: what a role allows in a scope, computed from live RBAC and cached.
- the step handlers (card, timeout, provision, extend, remind, expire, cleanup) live
  with their concept; :mod:`bot.agenda` says which step is next, :mod:`bot.steps` runs it.
"""
