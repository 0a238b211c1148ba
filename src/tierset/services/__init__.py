"""The service layer: the rules every adapter shares.

One module per domain (settings, accounts and retailers, integrations, credentials).
A service function takes the caller (a :class:`~tierset.core.authz.Principal`) and
plain Python values, validates them, asks the policy (core.authz) with the owning
account it looks up, and orchestrates the store; it returns the store's rows and
plain dataclasses. The gRPC servicers (tierset.api) only convert proto to these
arguments and results back to proto; the admin CLI calls the same functions as the
local operator. Services never import grpc, starlette or the adapters
(``.importlinter``), so a rule cannot depend on which door a call came in by.
"""
