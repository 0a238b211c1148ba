"""The gRPC adapter: servicers (proto in, service, proto out), the call pipeline,
health, and the server's composition.
"""
