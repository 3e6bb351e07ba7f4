"""Enode API access: an OAuth2 client (`client`), errors (`errors`), and the operations plugwatch needs.

Everything here is optional: without ENODE_CLIENT_ID / ENODE_CLIENT_SECRET the commands that need the API say
so and the rest of plugwatch is unaffected.
"""
