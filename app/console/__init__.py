"""The compliance officers' console: server-rendered pages under /console (issue 14).

Sign-in (OpenID Connect, or a local account with a password and a second factor), sessions held
server-side, roles and four-eyes decided by the policy engine, and the pages officers work in.
"""
