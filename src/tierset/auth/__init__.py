"""Who is calling: credentials, their hashing and storage, authentication of a call."""
