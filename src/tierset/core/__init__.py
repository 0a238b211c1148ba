"""The rules of tierset's domain: values, errors and their reasons, the authorisation
policy, the integration catalogue. No I/O here.
"""
